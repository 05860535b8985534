package main

import (
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/hark-audio/hark/dgemu"
)

// quietFlags registers the flags of the service's quiet side (dgemu.Quiet) and returns the
// function that reads them after parsing: --mode names a preset (dgemu.Modes), the single
// flags switch options on top of it.
func quietFlags(fs *flag.FlagSet) func() (dgemu.Quiet, error) {
	var names []string
	for k := range dgemu.Modes {
		if k != "" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	mode := fs.String("mode", "", "preset of the service's quiet side: "+strings.Join(names, ", "))
	noWordless := fs.Bool("no-wordless-results", false, "send no Results for audio without words (no empty finals or interims)")
	unanswered := fs.Bool("unanswered-finalize", false, "leave a Finalize unanswered when no words are pending")
	late := fs.Bool("late-finalize", false, "answer a Finalize with no words pending late: an empty from_finalize final after the next Finalize")
	notSF := fs.Bool("finalize-not-speech-final", false, "answers to Finalize carry speech_final false")
	emptyEvery := fs.Duration("empty-final-every", 0, "send an empty final every this much audio of silence; 0 = never")
	jitter := fs.Duration("results-jitter", 0, "add a random delay in [0, this) to each live server frame, order kept")
	return func() (dgemu.Quiet, error) {
		q, ok := dgemu.Modes[*mode]
		if !ok {
			return q, fmt.Errorf("unknown --mode %q (known: %s)", *mode, strings.Join(names, ", "))
		}
		q.NoWordlessResults = q.NoWordlessResults || *noWordless
		q.UnansweredFinalize = q.UnansweredFinalize || *unanswered
		q.LateFinalize = q.LateFinalize || *late
		q.FinalizeNotSpeechFinal = q.FinalizeNotSpeechFinal || *notSF
		if *emptyEvery > 0 {
			q.EmptyFinalEvery = *emptyEvery
		}
		if *jitter > 0 {
			q.ResultsJitter = *jitter
		}
		return q, nil
	}
}
