package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/capture"
	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/internal/fsx"
	"github.com/hark-audio/hark/vad"
	"golang.org/x/sys/unix"
)

// vadCSVHeader is part of the external interface (design.md): scripts parse it.
const vadCSVHeader = "start_s,end_s,level_dbfs,floor_dbfs,speech,sent"

// cmdVAD implements `hark vad FILE.wav [--config FILE] [--csv]`: the daemon's own VAD and
// gate, with the same defaults and configuration layers (minus persisted remote changes),
// run over a file as fast as it decodes.
func cmdVAD(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vad", stdout, stderr)
	file := fs.String("config", defaultConfigFile(), "configuration file whose vad section is used")
	csvOut := fs.Bool("csv", false, "print one CSV row per 100 ms frame instead of the tuning view")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(fs, err)
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: hark vad FILE.wav [--config FILE] [--csv]")
		return errUsage
	}
	l, err := config.Load(config.Options{File: *file, NoRemote: true})
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("invalid configuration: %w", err)}
	}
	for _, w := range l.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	f, err := fsx.OpenInput(ctx, pos[0]) // a FIFO's open waits for a writer: a signal ends it
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(stdout, 64<<10)
	var sink vadSink
	if *csvOut {
		sink = &csvSink{w: bw}
	} else {
		sink = newTermSink(bw, filepath.Base(pos[0]), l.Config.VAD, termWidth(stdout))
	}
	if err := runVAD(ctx, bufio.NewReaderSize(f, 64<<10), pos[0], l.Config.VAD, sink); err != nil {
		bw.Flush()
		return err
	}
	return bw.Flush()
}

// vadRow is one frame's outcome. Sent and Seg are final: the gate can no longer reach
// back to the frame.
type vadRow struct {
	Index int
	A     vad.Analysis
	Sent  bool
	Seg   uint64 // segment the frame was sent in, 0 if not sent
}

// vadSink receives rows in order, then the end of input.
type vadSink interface {
	row(r vadRow) error
	done() error
}

// runVAD decodes r and runs the gate, handing each frame's row to sink once its `sent`
// value is settled, i.e. once it has left the pre-roll window.
func runVAD(ctx context.Context, r io.Reader, name string, cfg vad.Config, sink vadSink) error {
	dec, err := capture.NewFileDecoder(r, name, time.Unix(0, 0).UTC())
	if err != nil {
		return err
	}
	g := vad.NewGate(cfg)
	preroll := cfg.PreRollMS / 100
	// Only the gate keeps frames (its pre-roll, at most that many) past the iteration
	// that decoded them, so their memory is reused after that: a long file then costs no
	// allocation per frame (nor fresh pages to fault in).
	ring := make([]int16, (g.Config().PreRollMS/100+2)*audio.FrameSamples)
	slot := func(n int) []int16 {
		i := n % (len(ring) / audio.FrameSamples) * audio.FrameSamples
		return ring[i : i+audio.FrameSamples : i+audio.FrameSamples]
	}
	var (
		pending []vadRow // rows not yet final; pending[0].Index == next
		next    int
		ev      = make([]vad.Event, 0, 64)
	)
	apply := func(ev []vad.Event) {
		for _, e := range ev {
			if e.Kind != vad.SegmentFrame {
				continue
			}
			if j := int(e.Frame.Seq) - next; j >= 0 && j < len(pending) {
				pending[j].Sent = true
				pending[j].Seg = e.Segment
			}
		}
	}
	emit := func(upto int) error {
		for next < upto && len(pending) > 0 {
			if err := sink.row(pending[0]); err != nil {
				return err
			}
			pending = pending[1:]
			next++
		}
		return nil
	}
	for n := 0; ; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		fr, err := dec.NextInto(slot(n))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		pending = append(pending, vadRow{Index: int(fr.Seq)})
		apply(g.Push(fr, ev[:0]))
		pending[len(pending)-1].A = g.Last()
		// Frames older than the pre-roll can no longer be sent.
		if err := emit(int(fr.Seq) - preroll + 1); err != nil {
			return err
		}
	}
	apply(g.Flush(ev[:0]))
	if err := emit(math.MaxInt); err != nil {
		return err
	}
	return sink.done()
}

// csvSink writes the stable CSV format.
type csvSink struct {
	w   *bufio.Writer
	buf []byte
	hdr bool
}

func (c *csvSink) row(r vadRow) error {
	if !c.hdr {
		c.hdr = true
		if _, err := c.w.WriteString(vadCSVHeader + "\n"); err != nil {
			return err
		}
	}
	b := c.buf[:0]
	b = appendTenths(b, r.Index)
	b = append(b, ',')
	b = appendTenths(b, r.Index+1)
	b = append(b, ',')
	b = strconv.AppendFloat(b, round1(r.A.LevelDBFS), 'f', 1, 64)
	b = append(b, ',')
	b = strconv.AppendFloat(b, round1(r.A.FloorDBFS), 'f', 1, 64)
	b = append(b, ',', bit(r.A.Speech), ',', bit(r.Sent), '\n')
	c.buf = b
	_, err := c.w.Write(b)
	return err
}

func (c *csvSink) done() error {
	if !c.hdr { // an empty input still gets its header
		c.hdr = true
		_, err := c.w.WriteString(vadCSVHeader + "\n")
		return err
	}
	return nil
}

// appendTenths writes i/10 with one decimal, exactly (no float rounding).
func appendTenths(b []byte, i int) []byte {
	b = strconv.AppendInt(b, int64(i/10), 10)
	return append(b, '.', byte('0'+i%10))
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func bit(b bool) byte {
	if b {
		return '1'
	}
	return '0'
}

// termSink draws the tuning view: one line per frame with the level as a bar against the
// floor and threshold, the classifier's score, what was decided and why (S speech, v
// vetoed: loud enough, but the classifier judged it not speech), segment boundaries and a
// summary (e: the gate closed before its hangover ran out, the level being back at the
// floor after loud speech). Every line fits the terminal's width (termWidth).
type termSink struct {
	w     *bufio.Writer
	name  string
	cfg   vad.Config
	width int
	bar   int  // columns of the level bar
	nums  bool // whether the floor and threshold columns are shown

	frames, speech, sent, vetoed int
	levels, floors               []float64
	segLens                      []int
	hdr                          bool
	seg                          uint64 // segment of the previous row
	segFirst                     int
	line                         []byte
}

// The bar is drawn relative to the floor, 1 dB per column, because tuning is about how
// far speech and noise rise above the floor and where the threshold sits between them.
const (
	barBelow  = 6  // columns (dB) shown below the floor
	barMax    = 50 // widest bar (dB range) on a wide terminal
	barMin    = 12
	lineFixed = 37 // "  12.3s " + " -35.2 -48.1 -45.1 0.87 S▶" around the bar
	lineShort = 23 // the same without the floor and threshold columns
	// minWidth is the narrowest view drawn; narrower terminals get lines of this width.
	minWidth = 40
)

// termWidth is the width the tuning view must fit: $COLUMNS when it is a positive number
// (shells set it, and it lets a user ask for a width), else the width of the terminal
// out writes to, else 80 (a file, a pipe).
func termWidth(out io.Writer) int {
	if c, err := strconv.Atoi(strings.TrimSpace(os.Getenv("COLUMNS"))); err == nil && c > 0 {
		return c
	}
	if f, ok := out.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return int(ws.Col)
		}
	}
	return 80
}

func newTermSink(w *bufio.Writer, name string, cfg vad.Config, width int) *termSink {
	t := &termSink{w: w, name: name, cfg: cfg, width: max(width, minWidth)}
	// Lines stay one column short of the width: some terminals wrap a line that fills
	// the last column.
	avail := t.width - 1
	t.nums = avail-lineFixed >= barMin+10
	fixed := lineShort
	if t.nums {
		fixed = lineFixed
	}
	t.bar = max(barMin, min(barMax, avail-fixed))
	return t
}

// fit cuts s to the view's width (in runes: the view's symbols are one column each).
func (t *termSink) fit(s string) string {
	if r := []rune(s); len(r) > t.width-1 {
		return string(r[:t.width-2]) + "…"
	}
	return s
}

func (t *termSink) header() {
	t.hdr = true
	p := func(format string, a ...any) { fmt.Fprintln(t.w, t.fit(fmt.Sprintf(format, a...))) }
	p("%s", t.name)
	cls := "off"
	if t.cfg.ClassifierThreshold > 0 {
		cls = fmt.Sprintf("%g", t.cfg.ClassifierThreshold)
	}
	p("threshold %g dB over floor, noise factor %g, classifier %s", t.cfg.ThresholdDB, t.cfg.NoiseFactor, cls)
	p("pre-roll %d ms, hangover %d ms", t.cfg.PreRollMS, t.cfg.HangoverMS)
	p("bar: level, 1 column = 1 dB from %d dB below the floor", barBelow)
	p("     ░ up to the floor  █ above it  ┃ threshold")
	p("score: the classifier's speech probability (- when off)")
	p("S speech  v vetoed (loud, but not speech-like)  ▶ sent")
	p("e ended: back at the floor after loud speech, the hangover is cut short")
	fmt.Fprintln(t.w)
	if t.nums {
		p("%7s %-*s %6s %6s %6s %4s", "time", t.bar, "level", "level", "floor", "thresh", "score")
	} else {
		p("%7s %-*s %6s %4s", "time", t.bar, "level", "level", "score")
	}
}

// col is the bar column of a level given the floor.
func col(db, floor float64) int {
	c := int(math.Floor(db-floor)) + barBelow
	return max(-1, min(barMax-1, c))
}

func (t *termSink) row(r vadRow) error {
	if !t.hdr {
		t.header()
	}
	if r.Seg != t.seg {
		t.endSegment(r.Index)
		if r.Seg != 0 {
			fmt.Fprintln(t.w, t.fit(fmt.Sprintf("        ┌─ segment %d starts at %.1f s", r.Seg, float64(r.Index)/10)))
			t.segFirst = r.Index
		}
		t.seg = r.Seg
	}
	a := r.A
	t.frames++
	if a.Speech {
		t.speech++
	}
	if a.Vetoed {
		t.vetoed++
	}
	if r.Sent {
		t.sent++
	}
	t.levels = append(t.levels, a.LevelDBFS)
	t.floors = append(t.floors, a.FloorDBFS)
	b := fmt.Appendf(t.line[:0], "%6.1fs ", float64(r.Index)/10)
	lc, tc := col(a.LevelDBFS, a.FloorDBFS), col(a.ThresholdDBFS, a.FloorDBFS)
	for c := 0; c < t.bar; c++ {
		switch {
		case c == tc || (c == t.bar-1 && tc >= t.bar):
			b = append(b, "┃"...)
		case c <= lc && c < barBelow:
			b = append(b, "░"...)
		case c <= lc:
			b = append(b, "█"...)
		default:
			b = append(b, ' ')
		}
	}
	b = fmt.Appendf(b, " %6.1f", a.LevelDBFS)
	if t.nums {
		b = fmt.Appendf(b, " %6.1f %6.1f", a.FloorDBFS, a.ThresholdDBFS)
	}
	if a.Score >= 0 {
		b = fmt.Appendf(b, " %4.2f ", a.Score)
	} else {
		b = append(b, "    - "...)
	}
	switch {
	case a.Speech:
		b = append(b, 'S')
	case a.Vetoed:
		b = append(b, 'v')
	case a.Ended:
		b = append(b, 'e')
	default:
		b = append(b, ' ')
	}
	if r.Sent {
		b = append(b, "▶"...)
	}
	b = append(b, '\n')
	t.line = b
	_, err := t.w.Write(b)
	return err
}

// endSegment closes the segment shown so far, if any, at frame index end (exclusive).
func (t *termSink) endSegment(end int) {
	if t.seg == 0 {
		return
	}
	n := end - t.segFirst
	t.segLens = append(t.segLens, n)
	fmt.Fprintln(t.w, t.fit(fmt.Sprintf("        └─ segment %d ends at %.1f s (%.1f s)", t.seg, float64(end)/10, float64(n)/10)))
	t.seg = 0
}

func pct(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

func (t *termSink) done() error {
	if !t.hdr {
		t.header()
	}
	t.endSegment(t.frames)
	frac := func(n int) float64 {
		if t.frames == 0 {
			return 0
		}
		return 100 * float64(n) / float64(t.frames)
	}
	p := func(format string, a ...any) { fmt.Fprintln(t.w, t.fit(fmt.Sprintf(format, a...))) }
	p("\nsummary")
	p("  audio   %.1f s (%d frames)", float64(t.frames)/10, t.frames)
	p("  speech  %.1f s (%.1f%%)", float64(t.speech)/10, frac(t.speech))
	p("  vetoed  %.1f s (%.1f%%): loud, not speech-like", float64(t.vetoed)/10, frac(t.vetoed))
	p("  sent    %.1f s (%.1f%%) in %d segments", float64(t.sent)/10, frac(t.sent), len(t.segLens))
	if len(t.segLens) > 0 {
		ls := make([]float64, len(t.segLens))
		for i, n := range t.segLens {
			ls[i] = float64(n) / 10
		}
		p("          segments: median %.1f s, longest %.1f s", pct(ls, 0.5), pct(ls, 1))
	}
	p("  level   p10 %.1f  median %.1f  p90 %.1f dBFS", pct(t.levels, 0.1), pct(t.levels, 0.5), pct(t.levels, 0.9))
	p("  floor   min %.1f  median %.1f  max %.1f dBFS", pct(t.floors, 0), pct(t.floors, 0.5), pct(t.floors, 1))
	return nil
}
