package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
)

// frames calls Next on a goroutine of its own, as the agent's audio loop does, and
// delivers copies of the frames (the test may keep them beyond FrameLifetime) on a channel
// that is closed once Next fails. The goroutine ends then, or when s is closed.
func frames(s *Source) <-chan audio.Frame {
	ch := make(chan audio.Frame)
	go func() {
		defer close(ch)
		for {
			f, err := s.Next()
			if err != nil {
				return
			}
			f.Samples = slices.Clone(f.Samples)
			select {
			case ch <- f:
			case <-s.ctx.Done():
				return
			}
		}
	}()
	return ch
}

// collect reads every frame until the input ends or the timeout passes.
func collect(t *testing.T, s *Source, timeout time.Duration) []audio.Frame {
	t.Helper()
	var out []audio.Frame
	deadline := time.After(timeout)
	fr := frames(s)
	for {
		select {
		case f, ok := <-fr:
			if !ok {
				return out
			}
			out = append(out, f)
		case <-deadline:
			t.Fatalf("frames still open after %v (%d received)", timeout, len(out))
		}
	}
}

func TestFileInputFastAndPaced(t *testing.T) {
	before, _ := goroutines()
	path := writeTemp(t, "tone.wav", sineWAV(48000, 2, 440, 0.4, 1.05)) // 10.5 frames
	for _, realtime := range []bool{false, true} {
		start := time.Now()
		s, err := Open(context.Background(), Config{Input: path, Realtime: realtime})
		if err != nil {
			t.Fatal(err)
		}
		frames := collect(t, s, 10*time.Second)
		elapsed := time.Since(start)
		if err := s.Err(); err != nil {
			t.Fatalf("Err after EOF: %v", err)
		}
		if len(frames) != 11 {
			t.Fatalf("realtime=%v: %d frames, want 11", realtime, len(frames))
		}
		for i, f := range frames {
			if f.Seq != uint64(i) || len(f.Samples) != audio.FrameSamples {
				t.Fatalf("frame %d: seq %d len %d", i, f.Seq, len(f.Samples))
			}
			if i > 0 && f.Time.Sub(frames[i-1].Time) != audio.FrameDuration {
				t.Fatalf("frame times not 100 ms apart: %v", f.Time.Sub(frames[i-1].Time))
			}
		}
		st := s.Stats()
		if st.Frames != 11 || st.State != StateEnded || st.Backend != "file" {
			t.Fatalf("stats %+v", st)
		}
		t.Logf("realtime=%v: 1.1 s of audio delivered in %v", realtime, elapsed.Round(time.Millisecond))
		if realtime && elapsed < time.Second {
			t.Fatalf("paced input delivered 1.1 s of audio in %v", elapsed)
		}
		if !realtime && elapsed > time.Second {
			t.Fatalf("fast input took %v for 1.1 s of audio", elapsed)
		}
		s.Close()
		s.Close() // idempotent
	}
	checkGoroutines(t, before)
}

// While idle (SetIdle), real-time file input is released in batches of idleStride frames,
// and still never a frame before it is due; back to per-frame release once speech starts.
func TestFileInputIdleBatches(t *testing.T) {
	path := writeTemp(t, "tone.wav", sineWAV(16000, 1, 440, 0.4, 2.0)) // 20 frames
	start := time.Now()
	s, err := Open(context.Background(), Config{Input: path, Realtime: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var at []time.Time
	for i := 0; ; i++ {
		switch i {
		case 0:
			s.SetIdle(true)
		case 15:
			s.SetIdle(false)
		}
		_, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if due := start.Add(time.Duration(i+1) * audio.FrameDuration); now.Before(due) {
			t.Fatalf("frame %d released %v before it was due", i, due.Sub(now))
		}
		at = append(at, now)
	}
	if len(at) != 20 {
		t.Fatalf("%d frames, want 20", len(at))
	}
	// Wake-ups: a frame released more than 40 ms after the one before it needed one. Per
	// frame pacing takes 20; idle batches of 5 over frames 1-15 take about 3 + 5.
	wakes := 0
	for i := 1; i < len(at); i++ {
		if at[i].Sub(at[i-1]) > 40*time.Millisecond {
			wakes++
		}
	}
	t.Logf("20 frames in %d wake-ups", wakes)
	if wakes > 12 {
		t.Fatalf("idle input woke %d times for 20 frames: not batched", wakes)
	}
}

func TestFileInputErrors(t *testing.T) {
	_, err := Open(context.Background(), Config{Input: "/nonexistent/x.wav"})
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "/nonexistent/x.wav") {
		t.Fatalf("missing file: %v", err)
	}
	bad := writeTemp(t, "notes.wav", []byte("this is a text file, not audio"))
	_, err = Open(context.Background(), Config{Input: bad})
	if err == nil || !errors.Is(err, audio.ErrNotWAV) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("text file: %v", err)
	}
}

func TestStdinRaw(t *testing.T) {
	before, _ := goroutines()
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// 2.5 frames, written in odd-sized pieces as a pipe would deliver them.
		var b []byte
		for i := 0; i < 4000; i++ {
			b = binary.LittleEndian.AppendUint16(b, uint16(i))
		}
		for len(b) > 0 {
			n := min(len(b), 777)
			pw.Write(b[:n])
			b = b[n:]
		}
		pw.Close()
	}()
	s, err := Open(context.Background(), Config{Input: "-", Stdin: pr, Realtime: false})
	if err != nil {
		t.Fatal(err)
	}
	frames := collect(t, s, 5*time.Second)
	wg.Wait()
	if len(frames) != 3 || s.Err() != nil {
		t.Fatalf("%d frames, err %v", len(frames), s.Err())
	}
	for i, f := range frames {
		for j, v := range f.Samples {
			want := int16(i*1600 + j)
			if i*1600+j >= 4000 {
				want = 0
			}
			if v != want {
				t.Fatalf("frame %d sample %d = %d, want %d", i, j, v, want)
			}
		}
	}
	s.Close()

	// A read error on stdin ends the source with an error naming it.
	pr, pw = io.Pipe()
	go func() {
		pw.Write(make([]byte, 5000))
		pw.CloseWithError(errors.New("broken pipe upstream"))
	}()
	s, err = Open(context.Background(), Config{Input: "-", Stdin: pr})
	if err != nil {
		t.Fatal(err)
	}
	frames = collect(t, s, 5*time.Second)
	if len(frames) != 1 || s.Err() == nil || !strings.Contains(s.Err().Error(), "stdin") || !strings.Contains(s.Err().Error(), "broken pipe upstream") {
		t.Fatalf("%d frames, err %v", len(frames), s.Err())
	}
	s.Close()

	// Close while stdin is idle returns at once (the blocked read is not waited for)
	// and the read goroutine ends when the read returns.
	pr, pw = io.Pipe()
	s, err = Open(context.Background(), Config{Input: "-", Stdin: pr, Realtime: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on an idle stdin")
	}
	if _, err := s.Next(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	pw.Close()
	checkGoroutines(t, before)
}

func TestBackendSelection(t *testing.T) {
	if _, err := backendChoices("oss"); err == nil {
		t.Fatal("unknown backend accepted")
	}
	for _, b := range Backends {
		if _, err := backendChoices(b); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	// Every exposed backend either initialises or fails with a clear error; none may
	// panic or hang, and "null" must work on any machine.
	for _, b := range Backends {
		devs, err := ListDevices(context.Background(), b)
		t.Logf("backend %s: %d devices, err %v", b, len(devs), err)
		for _, d := range devs {
			t.Logf("  %s %q (id %s) default=%v", d.Backend, d.Name, d.ID, d.Default)
		}
		if b == "null" && (err != nil || len(devs) == 0) {
			t.Fatalf("null backend: %v, %d devices", err, len(devs))
		}
	}
}

// The null backend really opens and delivers frames of silence at about real time.
func TestNullBackendDeliversSilence(t *testing.T) {
	before, _ := goroutines()
	var events []Event
	var mu sync.Mutex
	s, err := Open(context.Background(), Config{Backend: "null", OnEvent: func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var got []audio.Frame
	fr := frames(s)
	timeout := time.After(10 * time.Second)
	for len(got) < 10 {
		select {
		case f := <-fr:
			got = append(got, f)
		case <-timeout:
			t.Fatalf("only %d frames from the null backend in 10 s", len(got))
		}
	}
	elapsed := time.Since(start)
	t.Logf("null backend: 10 frames in %v", elapsed.Round(time.Millisecond))
	for i, f := range got {
		if f.Seq != uint64(i) || len(f.Samples) != audio.FrameSamples {
			t.Fatalf("frame %d: seq %d len %d", i, f.Seq, len(f.Samples))
		}
		for _, v := range f.Samples {
			if v != 0 {
				t.Fatalf("null backend frame %d not silent", i)
			}
		}
		if i > 0 && !f.Time.After(got[i-1].Time) {
			t.Fatal("frame times not increasing")
		}
	}
	if d := got[9].Time.Sub(got[0].Time); d < 800*time.Millisecond || d > 1200*time.Millisecond {
		t.Fatalf("9 frame periods span %v of capture time", d)
	}
	st := s.Stats()
	if st.Backend != "null" || st.State != StateCapturing {
		t.Fatalf("stats %+v", st)
	}
	s.Close()
	if st := s.Stats(); st.Frames < 10 {
		t.Fatalf("stats after close %+v: want at least the 10 frames received", st)
	}
	for range fr { // ends once Next reports the close
	}
	if s.Err() != nil || s.Stats().State != StateClosed {
		t.Fatalf("after Close: err %v state %s", s.Err(), s.Stats().State)
	}
	checkGoroutines(t, before)
}

func TestOpenErrorsAreClear(t *testing.T) {
	_, err := Open(context.Background(), Config{Backend: "null", Device: "usb"})
	if err == nil || !strings.Contains(err.Error(), `open capture device "usb"`) || !strings.Contains(err.Error(), "no device matches; available:") {
		t.Fatalf("unknown device: %v", err)
	}
	t.Log(err)
	_, err = Open(context.Background(), Config{Backend: "jack"})
	if err == nil || !strings.Contains(err.Error(), "jack") {
		t.Fatalf("bad backend: %v", err)
	}
	// The null device can be chosen by name substring and by id.
	devs, err := ListDevices(context.Background(), "null")
	if err != nil || len(devs) == 0 {
		t.Fatal(err)
	}
	for _, want := range []string{strings.ToUpper(devs[0].Name[:4]), devs[0].ID} {
		s, err := Open(context.Background(), Config{Backend: "null", Device: want})
		if err != nil {
			t.Fatalf("device %q: %v", want, err)
		}
		if got := s.Stats().Device; got != devs[0].Name {
			t.Fatalf("device %q opened %q", want, got)
		}
		s.Close()
	}
}

func TestMatchDevice(t *testing.T) {
	devs := []Device{
		{ID: "hw:0,0", Name: "HDA Intel PCH: ALC3246 Analog"},
		{ID: "hw:1,0", Name: "USB Audio Device"},
		{ID: "hw:2,0", Name: "USB Audio Device Pro"},
	}
	for _, tc := range []struct{ want, id, err string }{
		{"", "", ""},
		{"hw:1,0", "hw:1,0", ""},
		{"usb audio device", "hw:1,0", ""}, // exact name beats substring
		{"alc", "hw:0,0", ""},
		{"pro", "hw:2,0", ""},
		{"usb", "", "2 devices match"},
		{"webcam", "", "no device matches; available: \"HDA Intel PCH: ALC3246 Analog\" (id hw:0,0)"},
	} {
		d, err := matchDevice(devs, tc.want)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.want, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.want, err)
		case tc.id == "" && d != nil, tc.id != "" && (d == nil || d.ID != tc.id):
			t.Errorf("%q: got %+v, want id %q", tc.want, d, tc.id)
		}
	}
}

// A consumer that stalls longer than the ring holds loses the oldest audio: the Source
// reports it (event and stats) and Seq shows the gap, while the callback keeps running.
func TestMicOverflowReported(t *testing.T) {
	before, _ := goroutines()
	evs := make(chan Event, 10)
	s, err := Open(context.Background(), Config{Backend: "null", RingMS: 200, OnEvent: func(e Event) {
		select {
		case evs <- e:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	// Stall: nothing calls Next, so the 200 ms ring overflows.
	time.Sleep(1500 * time.Millisecond) // pacing the stall itself, not waiting for a result
	fr := frames(s)
	var prev = first
	gap := false
	var lostFrames uint64
	timeout := time.After(10 * time.Second)
	for !gap {
		select {
		case f := <-fr:
			if f.Seq != prev.Seq+1 {
				gap = true
				lostFrames = f.Seq - prev.Seq - 1
				t.Logf("gap: seq %d after %d", f.Seq, prev.Seq)
			}
			if !f.Time.After(prev.Time) {
				t.Fatalf("time went backwards across the overflow")
			}
			prev = f
		case <-timeout:
			t.Fatal("no Seq gap after the stall")
		}
	}
	select {
	case e := <-evs:
		if e.Type != EventOverflow || e.Dropped == 0 {
			t.Fatalf("event %+v", e)
		}
		t.Logf("overflow event: %d samples dropped", e.Dropped)
	case <-time.After(5 * time.Second):
		t.Fatal("no overflow event")
	}
	// Every lost sample is counted, and the lost frames are exactly the missing Seqs.
	if st := s.Stats(); st.DroppedSamples != lostFrames*audio.FrameSamples {
		t.Fatalf("dropped %d samples, but %d frames are missing", st.DroppedSamples, lostFrames)
	}
	s.Close()
	checkGoroutines(t, before)
}

// "alsa" and "auto" really capture: ALSA's "null" PCM (in alsa-lib's default config)
// generates silence, so it can be opened through miniaudio's ALSA backend on any machine
// with libasound, sound card or not.
func TestALSAAndAutoCapture(t *testing.T) {
	devs, err := ListDevices(context.Background(), "alsa")
	if err != nil {
		t.Skipf("ALSA backend unavailable here: %v", err)
	}
	found := false
	for _, d := range devs {
		found = found || d.ID == "null"
	}
	if !found {
		t.Skip(`alsa-lib has no "null" PCM here`)
	}
	before, _ := goroutines()
	for _, backend := range []string{"alsa", "auto"} {
		s, err := Open(context.Background(), Config{Backend: backend, Device: "null"})
		if err != nil {
			t.Fatalf("%s: %v", backend, err)
		}
		var got []audio.Frame
		fr := frames(s)
		timeout := time.After(10 * time.Second)
		for len(got) < 5 {
			select {
			case f := <-fr:
				got = append(got, f)
			case <-timeout:
				t.Fatalf("%s: %d frames in 10 s", backend, len(got))
			}
		}
		st := s.Stats()
		t.Logf("%s: opened %q on %s", backend, st.Device, st.Backend)
		if st.Backend != "alsa" && st.Backend != "pulseaudio" {
			t.Fatalf("%s: backend %q", backend, st.Backend)
		}
		// ALSA's null PCM has no clock: it hands over silence as fast as it is read, so the
		// ring overflows at once. Frames must still be whole, in order and counted.
		for i, f := range got {
			if len(f.Samples) != audio.FrameSamples || (i > 0 && (f.Seq <= got[i-1].Seq || !f.Time.After(got[i-1].Time))) {
				t.Fatalf("%s frame %d: seq %d after %d", backend, i, f.Seq, got[max(i-1, 0)].Seq)
			}
		}
		if got[len(got)-1].Seq > uint64(len(got)-1) && s.Stats().DroppedSamples == 0 {
			t.Fatalf("%s: Seq gaps without dropped samples counted", backend)
		}
		s.Close()
	}
	checkGoroutines(t, before)
}
