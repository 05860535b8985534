package dgemu

import (
	"fmt"
	"strings"
)

// The model/language table, from Deepgram's public "Models & Languages Overview" and the
// Nova-3 language announcements in its changelog up to 2026-08-05 (nova-3: English plus
// the monolingual models added since 2025-08; nova-2: the 36 languages of 2024-05; the
// domain variants: English only). The service answers a pair outside its table at the
// handshake (live) or before reading the body (pre-recorded) with 400, err_code
// "Bad Request" and "No such model/language/tier combination found." (not
// INVALID_QUERY_PARAMETER), so a bad remote change of deepgram.model or deepgram.language
// shows up in tests as it would in the field. The service's table changes as models ship;
// docs/emulator.md says so.

// msgNoModel is the service's message for a model/language pair it does not serve.
const msgNoModel = "No such model/language/tier combination found."

func langs(groups ...string) map[string]bool {
	m := map[string]bool{}
	for _, g := range groups {
		for _, l := range strings.Fields(g) {
			m[strings.ToLower(l)] = true
		}
	}
	return m
}

const (
	english    = "en en-US en-AU en-GB en-IN en-NZ"
	englishUS  = "en en-US"
	nova3Langs = "multi en-CA de de-CH nl nl-BE sv sv-SE da da-DK es es-419 fr fr-CA pt pt-BR pt-PT " +
		"it tr no id bg cs fi hi hu ja ko ko-KR pl ru uk vi ca et el lv lt ms ro sk be bn bs hr " +
		"kn mk mr sr sl ta tl te th th-TH zh zh-CN zh-Hans zh-TW zh-Hant zh-HK pa pa-IN ne"
	nova2Langs = "multi bg ca zh zh-CN zh-Hans zh-TW zh-Hant zh-HK cs da da-DK nl nl-BE et fi fr fr-CA " +
		"de de-CH el hi hu id it ja ko ko-KR lv lt ms no pl pt pt-BR pt-PT ro ru sk es es-419 sv sv-SE " +
		"th th-TH tr uk vi"
	enhancedLangs = "da nl fr de hi it ja ko no pl pt pt-BR pt-PT es es-419 sv ta taq"
	baseLangs     = "zh zh-CN zh-TW da nl fr fr-CA de hi hi-Latn id it ja ko no pl pt pt-BR pt-PT ru es " +
		"es-419 sv tr uk ta taq"
)

// modelEntry is one model the emulator serves: what the service reports for it and the
// languages it takes.
type modelEntry struct {
	info  modelInfo
	langs map[string]bool
}

var modelTable = buildModelTable()

func buildModelTable() map[string]modelEntry {
	t := map[string]modelEntry{}
	add := func(info modelInfo, ls map[string]bool, names ...string) {
		for _, n := range names {
			t[n] = modelEntry{info: info, langs: ls}
		}
	}
	add(modelInfo{"general-nova-3", "2025-04-17.21547", "nova-3", "3b3aabe4-608a-46ac-9585-7960a25daf1a"},
		langs(english, nova3Langs), "nova-3", "nova-3-general")
	add(modelInfo{"medical-nova-3", "2025-04-17.21547", "nova-3", "8f2a64b3-ff27-4b4d-9a3b-46d6ee9f7c4c"},
		langs(english, "en-CA"), "nova-3-medical")
	add(modelInfo{"2-general-nova", "2024-01-18.26916", "nova-2", "c0d1a568-ce81-4fea-97e7-bd45cb1fdf3c"},
		langs(english, nova2Langs), "nova-2", "nova-2-general")
	for i, d := range []string{"meeting", "phonecall", "voicemail", "finance", "conversationalai", "video",
		"medical", "drivethru", "automotive", "atc"} {
		add(modelInfo{"2-" + d + "-nova", "2024-01-18.26916", "nova-2", fmt.Sprintf("c0d1a568-ce81-4fea-97e7-bd45cb1f%04x", (i+1)*97)},
			langs(englishUS), "nova-2-"+d)
	}
	add(modelInfo{"general-nova", "2023-06-14.0", "nova", "6b28e919-8427-4f32-9847-492e2efd7daf"},
		langs(english, "es es-419"), "nova", "nova-general")
	add(modelInfo{"phonecall-nova", "2023-06-14.0", "nova", "6b28e919-8427-4f32-9847-492e2efd7db0"},
		langs(englishUS), "nova-phonecall")
	add(modelInfo{"medical-nova", "2023-06-14.0", "nova", "6b28e919-8427-4f32-9847-492e2efd7db1"},
		langs(englishUS), "nova-medical")
	add(modelInfo{"general", "2023-02-22.3", "enhanced", "125125fb-e391-458e-a227-a60d6426f5d6"},
		langs(englishUS, enhancedLangs), "enhanced", "enhanced-general")
	for i, d := range []string{"meeting", "phonecall", "finance"} {
		add(modelInfo{d, "2023-02-22.3", "enhanced", fmt.Sprintf("125125fb-e391-458e-a227-a60d6426f5%02x", i+0xd7)},
			langs(englishUS), "enhanced-"+d)
	}
	add(modelInfo{"general", "2023-02-22.3", "base", "1ed36bac-f71c-4f3f-a31f-02fd6525c489"},
		langs(english, baseLangs), "base", "base-general", "general", "")
	for i, d := range []string{"meeting", "phonecall", "finance", "conversationalai", "voicemail", "video"} {
		add(modelInfo{d, "2023-02-22.3", "base", fmt.Sprintf("1ed36bac-f71c-4f3f-a31f-02fd6525c4%02x", i+0x8a)},
			langs(englishUS), d, "base-"+d)
	}
	return t
}

// knownModel reports what the service says about a model ("" is the service's default,
// base-general).
func knownModel(model string) (modelInfo, bool) {
	e, ok := modelTable[strings.ToLower(model)]
	return e.info, ok
}

// checkModelLanguage refuses a model the emulator does not serve or a language that model
// does not take, as the service does: 400 "Bad Request", "No such model/language/tier
// combination found." (The service's message names neither; the emulator appends which
// pair it was, after the service's sentence, so a test failure is readable.)
func checkModelLanguage(model, language string) *queryError {
	e, ok := modelTable[strings.ToLower(model)]
	if !ok || !e.langs[strings.ToLower(language)] {
		return &queryError{status: 400, code: "Bad Request",
			msg: fmt.Sprintf("%s (model %q, language %q)", msgNoModel, model, language)}
	}
	return nil
}
