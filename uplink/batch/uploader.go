package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hark-audio/hark/internal/backoff"
	"github.com/hark-audio/hark/transcript"
	"github.com/hark-audio/hark/uplink/spool"
)

// UploaderConfig configures an Uploader. Zero values take the defaults noted.
type UploaderConfig struct {
	// Concurrency is how many uploads run at once (default 1). Publishing stays in
	// capture order whatever it is.
	Concurrency int
	Logger      *slog.Logger
	// Publish delivers one transcript durably (e.g. to the MQTT queue). An error means
	// "not delivered": the entry is kept and retried later; nil lets it be deleted.
	Publish func(transcript.Utterance) error
	// RetryMin and RetryMax bound the jittered exponential wait after a transient
	// failure (default 2 s and 5 min). Kick ends a wait early.
	RetryMin, RetryMax time.Duration
	// PausedRetry is the wait after an account or configuration refusal (401, 402, 403,
	// INVALID_QUERY_PARAMETER...; default 10 min). Such refusals do not fix themselves
	// quickly, and hammering them helps nobody.
	PausedRetry time.Duration
	// KickMinInterval rate-limits Kick while paused (default 1 min), so a stream of new
	// entries cannot turn the slow retry into a fast one.
	KickMinInterval time.Duration
	// MaxUnusable is how many unusable answers (a 2xx that is not a transcription: see
	// ErrBadResponse) one entry may get before it is moved aside with the reason
	// (default 3). Each is an upload the service bills; between them the entry waits a
	// backoff of its own (RetryMin..RetryMax), whatever Kick or new entries do.
	MaxUnusable int
	// OnChange, if set, is called (without locks held) after the state or the last error
	// changed, so the agent can publish them at once.
	OnChange func(Stats)
}

// State is the uploader's state, for the agent's state and health messages.
type State string

const (
	StateIdle      State = "idle"      // spool empty, waiting for entries
	StateUploading State = "uploading" // a pass is running
	StateBackoff   State = "backoff"   // transient failure, retrying after a wait
	StatePaused    State = "paused"    // auth/account/config refusal (401/402/403, a 400 about the request), slow retry
	StateStopped   State = "stopped"   // Run returned
	StateHeld      State = "held"      // Hold(true): nothing is uploaded or published until Hold(false)
)

// Stats are the uploader's counters and state.
type Stats struct {
	State       State     `json:"state"`
	Since       time.Time `json:"since"`                 // when State was entered
	NextAttempt time.Time `json:"next_attempt,omitzero"` // in backoff or paused
	LastError   string    `json:"last_error,omitempty"`  // the latest failure (empty after a success)
	LastClass   string    `json:"last_class,omitempty"`  // its Class
	// Uploaded counts successful upload calls; Published counts utterances delivered;
	// Empty counts entries whose transcript was empty (completed, nothing published);
	// MovedAside counts entries the service refused for good; Failures counts failed
	// upload calls; PublishErrors counts Publish errors; Resumed counts entries
	// published from a response saved earlier (after a restart or a failed publish).
	Uploaded      int64 `json:"uploaded"`
	Published     int64 `json:"published"`
	Empty         int64 `json:"empty"`
	MovedAside    int64 `json:"moved_aside"`
	Failures      int64 `json:"failures"`
	PublishErrors int64 `json:"publish_errors"`
	Resumed       int64 `json:"resumed"`
	// Unusable counts unusable answers (each one an upload the service billed).
	Unusable int64 `json:"unusable"`
}

// Uploader drains a spool through a Client. Create with NewUploader, run with Run.
type Uploader struct {
	sp   *spool.Spool
	c    *Client
	cfg  UploaderConfig
	log  *slog.Logger
	kick chan struct{}

	// held is Hold's flag; release wakes a held Run. cancelPass ends the uploads of the
	// pass in flight (under mu), so a hold stops audio already on its way out.
	held       atomic.Bool
	release    chan struct{}
	cancelPass context.CancelFunc

	mu      sync.Mutex
	st      Stats
	streak  int                    // consecutive failed passes
	entries map[string]*entryState // per-entry attempts, by spool id
}

// entryState is what the uploader remembers about one entry between passes (in memory: a
// restart allows MaxUnusable more attempts).
type entryState struct {
	unusable  int
	notBefore time.Time
}

// NewUploader returns an uploader; it does nothing until Run.
func NewUploader(sp *spool.Spool, c *Client, cfg UploaderConfig) *Uploader {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 2 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	if cfg.PausedRetry <= 0 {
		cfg.PausedRetry = 10 * time.Minute
	}
	if cfg.KickMinInterval <= 0 {
		cfg.KickMinInterval = time.Minute
	}
	if cfg.MaxUnusable <= 0 {
		cfg.MaxUnusable = 3
	}
	if cfg.Publish == nil {
		panic("batch.NewUploader: Publish is required")
	}
	return &Uploader{sp: sp, c: c, cfg: cfg, log: cfg.Logger.With("component", "uploader"),
		kick: make(chan struct{}, 1), release: make(chan struct{}, 1), st: Stats{State: StateIdle, Since: time.Now()},
		entries: map[string]*entryState{}}
}

// Kick asks for an attempt now: it ends a backoff wait at once and a paused wait if the
// last attempt is at least KickMinInterval old. Call it when live connectivity returns
// or to drain before exit, not for every new entry (Put wakes an idle uploader; a backoff
// is there because the service or the network failed). An entry waiting its own backoff
// after an unusable answer is not retried early. It never blocks.
func (u *Uploader) Kick() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// Hold stops (true) or resumes (false) uploading and publishing: while held nothing is
// sent anywhere (a muted device), an upload in flight is cancelled and its entry kept,
// and the state is StateHeld. It never blocks.
func (u *Uploader) Hold(h bool) {
	if u.held.Swap(h) == h {
		return
	}
	if h {
		u.mu.Lock()
		if u.cancelPass != nil {
			u.cancelPass()
		}
		u.mu.Unlock()
	}
	select {
	case u.release <- struct{}{}:
	default:
	}
}

// errHeld ends a pass that a Hold interrupted: not a failure.
var errHeld = errors.New("uploads held")

// Stats returns a snapshot.
func (u *Uploader) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.st
}

func (u *Uploader) setState(s State, next time.Time) {
	u.mu.Lock()
	changed := u.st.State != s
	if changed {
		u.st.State, u.st.Since = s, time.Now()
	}
	u.st.NextAttempt = next
	st := u.st
	u.mu.Unlock()
	if changed {
		u.changed(st)
	}
}

func (u *Uploader) changed(st Stats) {
	if u.cfg.OnChange != nil {
		u.cfg.OnChange(st)
	}
}

func (u *Uploader) count(f func(*Stats)) {
	u.mu.Lock()
	f(&u.st)
	u.mu.Unlock()
}

func (u *Uploader) entry(id string) *entryState {
	u.mu.Lock()
	defer u.mu.Unlock()
	e := u.entries[id]
	if e == nil {
		e = &entryState{}
		u.entries[id] = e
	}
	return e
}

func (u *Uploader) forget(id string) {
	u.mu.Lock()
	delete(u.entries, id)
	u.mu.Unlock()
}

// notYetError: the entry is waiting its own backoff; the pass stops there (capture order).
type notYetError struct{ until time.Time }

func (e *notYetError) Error() string {
	return "waiting to retry after an unusable answer until " + e.until.Format(time.RFC3339)
}

// passResult is how a pass over the pending entries ended.
type passResult struct {
	class      Class // ClassTransient, ClassAuth, ClassConfig, ClassUnusable; meaningless when ok
	ok         bool
	err        error
	retryAfter time.Duration
	waitOnly   bool // an entry's own backoff is not over: wait, nothing failed
}

// Run drains the spool until ctx is done, then returns ctx.Err() after every upload it
// started has stopped. Entries are taken in capture order; Put wakes an idle uploader.
func (u *Uploader) Run(ctx context.Context) error {
	defer u.setState(StateStopped, time.Time{})
	var lastAttempt time.Time
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		u.sp.Prune()
		list := u.sp.Pending()
		if u.held.Load() {
			u.setState(StateHeld, time.Time{})
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-u.release:
			}
			continue
		}
		if len(list) == 0 {
			u.setState(StateIdle, time.Time{})
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-u.sp.Changed():
			case <-u.kick:
			case <-u.release: // a Hold: the state says so at once
			}
			continue
		}
		u.setState(StateUploading, time.Time{})
		lastAttempt = time.Now()
		passCtx, cancel := context.WithCancel(ctx)
		u.mu.Lock()
		u.cancelPass = cancel
		u.mu.Unlock()
		if u.held.Load() { // a Hold between the check above and cancelPass being set
			cancel()
		}
		res := u.pass(passCtx, list)
		u.mu.Lock()
		u.cancelPass = nil
		u.mu.Unlock()
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if u.held.Load() {
			continue // entries released by the pass; the loop waits for the release
		}
		if res.ok {
			u.recovered()
			continue
		}
		if res.waitOnly {
			u.setState(StateBackoff, time.Now().Add(res.retryAfter))
			t := time.NewTimer(res.retryAfter)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		u.failed(res)
		if res.class == ClassAuth || res.class == ClassConfig {
			next := time.Now().Add(u.cfg.PausedRetry)
			u.setState(StatePaused, next)
			t := time.NewTimer(u.cfg.PausedRetry)
		paused:
			for {
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
					break paused
				case <-u.kick:
					if time.Since(lastAttempt) >= u.cfg.KickMinInterval {
						t.Stop()
						break paused
					}
				}
			}
			continue
		}
		wait := max(backoff.Policy{Min: u.cfg.RetryMin, Max: u.cfg.RetryMax}.Delay(u.streak-1), res.retryAfter)
		u.setState(StateBackoff, time.Now().Add(wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-u.kick:
			t.Stop()
		}
	}
}

// failed records a failed pass; the first of a streak is logged at Warn, the rest at
// Debug, and recovered logs the end of the streak.
func (u *Uploader) failed(res passResult) {
	u.mu.Lock()
	u.streak++
	n := u.streak
	u.st.LastError, u.st.LastClass = res.err.Error(), res.class.String()
	st := u.st
	u.mu.Unlock()
	u.changed(st)
	lvl := slog.LevelDebug
	if n == 1 {
		lvl = slog.LevelWarn
	}
	msg := "spool upload failed, will retry"
	if res.class == ClassAuth || res.class == ClassConfig {
		msg, lvl = "spool uploads paused: the service refused the account or the request", slog.LevelWarn
		if n > 1 {
			lvl = slog.LevelDebug
		}
	}
	u.log.Log(context.Background(), lvl, msg, "class", res.class.String(), "error", res.err, "failed_passes", n)
}

func (u *Uploader) recovered() {
	u.mu.Lock()
	n := u.streak
	u.streak = 0
	hadErr := u.st.LastError != ""
	u.st.LastError, u.st.LastClass = "", ""
	st := u.st
	u.mu.Unlock()
	if hadErr {
		u.changed(st)
	}
	if n > 0 {
		u.log.Info("spool uploads recovered", "failed_passes", n)
	}
}

// slot is one entry's progress through a pass.
type slot struct {
	e       spool.Entry
	done    chan struct{}
	claimed bool
	skipped bool // not started because the pass stopped
	resp    *Response
	err     error
	resumed bool
}

// pass uploads the listed entries with at most Concurrency outstanding and publishes the
// results strictly in list order. It stops at the first transient, account or
// publishing failure: later uploads already in flight finish and save their responses
// (so they are not uploaded again), nothing new starts, and every claim is released.
func (u *Uploader) pass(ctx context.Context, list []spool.Entry) passResult {
	slots := make([]*slot, len(list))
	for i, e := range list {
		slots[i] = &slot{e: e, done: make(chan struct{})}
	}
	stop := make(chan struct{})
	sem := make(chan struct{}, u.cfg.Concurrency)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // dispatcher: starts uploads in order
		defer wg.Done()
		for i, s := range slots {
			select {
			case sem <- struct{}{}:
			case <-stop:
			case <-ctx.Done():
			}
			select {
			case <-stop:
			case <-ctx.Done():
			default:
				wg.Add(1)
				go func() {
					defer wg.Done()
					u.work(ctx, s)
					close(s.done)
				}()
				continue
			}
			for _, r := range slots[i:] {
				r.skipped = true
				close(r.done)
			}
			return
		}
	}()

	res := passResult{ok: true}
	stopped := false
	halt := func(r passResult) {
		if !stopped {
			stopped, res = true, r
			close(stop)
		}
	}
	for _, s := range slots {
		select {
		case <-s.done:
		case <-ctx.Done():
			halt(passResult{class: ClassCanceled, err: ctx.Err()})
			<-s.done
		}
		if s.skipped {
			continue
		}
		if stopped {
			if s.claimed {
				u.sp.Release(s.e.Meta.ID)
			}
		} else if r, ok := u.finish(s); !ok {
			halt(r)
		}
		// The slot's token is returned only now, after its result was acted on: with
		// Concurrency 1 nothing is uploaded ahead of a refusal (a 401 costs one request,
		// not two), and at most Concurrency entries are between upload and publish.
		<-sem
	}
	wg.Wait()
	return res
}

// work claims and uploads one entry (or loads its saved response).
func (u *Uploader) work(ctx context.Context, s *slot) {
	e, err := u.sp.Claim(s.e.Meta.ID)
	if err != nil {
		s.err = err // completed, evicted or moved meanwhile: nothing to do
		return
	}
	s.claimed, s.e = true, e
	id := e.Meta.ID
	if nb := u.entry(id).notBefore; time.Now().Before(nb) && !e.HasResponse {
		s.err = &notYetError{until: nb}
		return
	}
	if e.HasResponse {
		if b, err := u.sp.Response(id); err == nil {
			if r, err := ParseResponse(b); err == nil {
				s.resp, s.resumed = r, true
				return
			}
		}
		u.log.Warn("saved response unreadable, uploading again", "id", id)
	}
	r, err := u.c.TranscribeFile(ctx, e.Path, PrerecordedOptions(e.Meta.Options), nil)
	if err != nil {
		s.err = err
		u.count(func(st *Stats) { st.Failures++ })
		return
	}
	u.count(func(st *Stats) { st.Uploaded++ })
	// Saved before publishing: if we die between here and Complete, the restart
	// publishes this response instead of paying for a second upload.
	if err := u.sp.SaveResponse(id, r.Raw); err != nil {
		u.log.Warn("could not save the response; a crash before publishing would upload again", "id", id, "error", err)
	}
	s.resp = r
}

// finish publishes or disposes of one finished slot, in order. ok=false stops the pass.
func (u *Uploader) finish(s *slot) (passResult, bool) {
	id := s.e.Meta.ID
	if !s.claimed {
		u.log.Debug("entry gone before upload", "id", id, "error", s.err)
		return passResult{}, true
	}
	if u.held.Load() {
		// Held (muted) while this entry was in flight: nothing more is sent or published;
		// a saved response stays saved and is published after the release.
		u.sp.Release(id)
		return passResult{class: ClassCanceled, err: errHeld}, false
	}
	if s.err != nil {
		var ny *notYetError
		if errors.As(s.err, &ny) {
			u.sp.Release(id)
			return passResult{class: ClassTransient, err: s.err, retryAfter: max(time.Until(ny.until), time.Millisecond), waitOnly: true}, false
		}
		class := Classify(s.err)
		reason := s.err.Error()
		if class == ClassUnusable {
			u.count(func(st *Stats) { st.Unusable++ })
			es := u.entry(id)
			u.mu.Lock()
			es.unusable++
			n := es.unusable
			u.mu.Unlock()
			if n < u.cfg.MaxUnusable {
				wait := backoff.Policy{Min: u.cfg.RetryMin, Max: u.cfg.RetryMax}.Delay(n - 1)
				u.mu.Lock()
				es.notBefore = time.Now().Add(wait)
				u.mu.Unlock()
				u.sp.Release(id)
				u.log.Warn("the service's answer for a spooled segment was unusable; it will be uploaded again",
					"id", id, "error", s.err, "attempt", n, "of", u.cfg.MaxUnusable, "retry_in", wait)
				return passResult{class: class, err: s.err, retryAfter: wait}, false
			}
			reason = fmt.Sprintf("%d unusable answers from the service (each one billed); the last: %v", n, s.err)
			class = ClassBadAudio // moved aside below
		}
		switch class {
		case ClassBadAudio, ClassLocal:
			var detail []byte
			var ae *APIError
			if errors.As(s.err, &ae) {
				detail = ae.Body
			}
			if err := u.sp.MoveAside(id, reason, detail); err != nil {
				u.log.Error("move aside failed", "id", id, "error", err)
				u.sp.Release(id)
				return passResult{class: ClassTransient, err: err}, false
			}
			u.forget(id)
			u.log.Warn("spooled segment moved aside to failed/", "id", id, "reason", reason)
			u.count(func(st *Stats) { st.MovedAside++ })
			return passResult{}, true
		}
		u.sp.Release(id)
		r := passResult{class: class, err: s.err}
		var ae *APIError
		if errors.As(s.err, &ae) {
			r.retryAfter = ae.RetryAfter
		}
		return r, false
	}
	m := s.e.Meta
	utt := s.resp.ToUtterance(m.Start, m.Duration(), m.DeviceID)
	if utt.Text == "" {
		u.log.Debug("spooled segment transcribed empty", "id", id, "request_id", utt.RequestID)
		u.count(func(st *Stats) { st.Empty++ })
	} else if err := u.cfg.Publish(utt); err != nil {
		u.count(func(st *Stats) { st.PublishErrors++ })
		u.sp.Release(id)
		return passResult{class: ClassTransient, err: fmt.Errorf("publish: %w", err)}, false
	} else {
		u.count(func(st *Stats) {
			st.Published++
			if s.resumed {
				st.Resumed++
			}
		})
	}
	u.forget(id)
	if err := u.sp.Complete(id); err != nil {
		// Published but not removed: a restart would publish it again. Nothing better
		// to do than say so.
		u.log.Error("could not remove a published spool entry; it may be published again after a restart", "id", id, "error", err)
	}
	u.log.Debug("spooled segment published", "id", id, "request_id", utt.RequestID, "audio", m.Duration())
	return passResult{}, true
}
