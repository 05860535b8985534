// Package spool is hark's on-disk store of speech that could not be transcribed live
// (stream down, or an utterance whose final transcript never arrived). Each segment is a
// 16 kHz mono linear16 WAV file plus a JSON metadata file (capture wall-clock start,
// device, the Deepgram options in force, why it was spooled). The uploader in
// uplink/batch drains it through the pre-recorded endpoint.
//
// Durability: every file is written under a temp name, fsynced, renamed into place and
// the directory fsynced, so a crash (kill -9, power loss) leaves either a complete entry
// or nothing that Open will not clean up. The metadata file is the entry's commit point:
// it is renamed last on Put and removed first on Complete. Files are 0600, directories
// 0700 (the audio is private speech).
//
// Layout of the directory:
//
//	<id>.wav          audio (audio.WAVHeader + samples)
//	<id>.json         metadata (commit point)
//	<id>.resp.json    the service's response, saved before publishing (see uplink/batch)
//	failed/<id>.*     entries moved aside (corrupt audio, ...) with <id>.reason.json
//	.tmp-*            temp files; removed by Open
//
// Bounds: MaxBytes counts every file, failed ones included; Put evicts the oldest
// entries (failed ones first) after writing, and entries older than MaxAge are evicted by
// Prune (called by Open, Put and the uploader). Entries claimed by the uploader are not
// evicted, so the spool may exceed MaxBytes by at most the entries being uploaded.
// Evictions are counted (Stats) and logged.
//
// A full disk (ENOSPC, EDQUOT) makes Put fail with an error matching ErrNoSpace; nothing
// already stored is touched, because eviction happens only after a successful write.
//
// Wiring (the agent):
//
//	sp, err := spool.Open(cfg.Spool.Dir, spool.Limits{MaxBytes: ..., MaxAge: ...}, log)
//	meta, err := sp.Put(spool.Meta{Start: firstSampleTime, DeviceID: id, Options: opts, Reason: "stream down"}, samples)
//	// the uploader (uplink/batch) wakes on Changed(); iteration is Pending, Claim,
//	// SaveResponse, Complete / MoveAside / Release.
package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hark-audio/hark/internal/fsx"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hark-audio/hark/audio"
)

const (
	extWAV     = ".wav"
	extMeta    = ".json"
	extResp    = ".resp.json"
	extReason  = ".reason.json"
	tmpPrefix  = fsx.TempPrefix
	failedDir  = "failed"
	wavHdrSize = 44
)

// Errors callers classify with errors.Is.
var (
	// ErrNoSpace: the filesystem is full (ENOSPC) or the quota is exhausted (EDQUOT).
	// The entry was not stored; nothing stored before was lost.
	ErrNoSpace = errors.New("no space left for the spool")
	// ErrTooLarge: the entry alone exceeds Limits.MaxBytes.
	ErrTooLarge = errors.New("entry larger than the spool limit")
	// ErrNotFound: no such entry (completed, evicted or moved aside meanwhile).
	ErrNotFound = errors.New("spool entry not found")
	// ErrClaimed: the entry is already claimed.
	ErrClaimed = errors.New("spool entry already claimed")
)

// Limits bound the spool. Zero means unbounded.
type Limits struct {
	MaxBytes int64
	MaxAge   time.Duration
}

// Entry is a stored segment as the uploader sees it.
type Entry struct {
	Meta Meta
	// Path is the WAV file.
	Path string
	// Size is the WAV file's size in bytes.
	Size int64
	// HasResponse says a transcription response was saved (SaveResponse) and the entry
	// needs publishing, not uploading.
	HasResponse bool
}

// Stats are the spool's counters and gauges. The JSON form (health messages) gives
// durations in seconds.
type Stats struct {
	Entries     int           `json:"entries"`         // pending entries
	Bytes       int64         `json:"bytes"`           // all files, failed ones included
	Audio       time.Duration `json:"-"`               // audio in pending entries
	Oldest      time.Time     `json:"oldest,omitzero"` // capture start of the oldest pending entry
	Failed      int           `json:"failed"`          // entries moved aside
	FailedBytes int64         `json:"failed_bytes"`
	// Evicted counts entries removed to honour the limits: speech lost untranscribed.
	Evicted      int64         `json:"evicted"`
	EvictedBytes int64         `json:"evicted_bytes"`
	EvictedAudio time.Duration `json:"-"`
	// Discarded counts entries removed on request (a mute with discard_spool): speech an
	// operator chose to drop untranscribed.
	Discarded int64 `json:"discarded"`
	// PutErrors counts failed Puts; LastPutError is the latest one's message.
	PutErrors    int64  `json:"put_errors"`
	LastPutError string `json:"last_put_error,omitempty"`
	// Unavailable says why the directory cannot be used (OpenDegraded), empty when it can.
	Unavailable string `json:"unavailable,omitempty"`
	// Orphans counts half-written entries removed by Open (a crash inside Put, which had
	// not returned, so nothing acknowledged was lost).
	Orphans int64 `json:"orphans"`
}

// MarshalJSON adds the durations as seconds.
func (s Stats) MarshalJSON() ([]byte, error) {
	type plain Stats
	return json.Marshal(struct {
		plain
		AudioSeconds        float64 `json:"audio_seconds"`
		EvictedAudioSeconds float64 `json:"evicted_audio_seconds"`
	}{plain(s), s.Audio.Seconds(), s.EvictedAudio.Seconds()})
}

type entry struct {
	meta     Meta
	wavSize  int64
	metaSize int64
	respSize int64
	claimed  bool
}

func (e *entry) bytes() int64 { return e.wavSize + e.metaSize + e.respSize }

type failedEntry struct {
	id    string
	size  int64
	moved time.Time
	audio time.Duration
}

// Spool is safe for concurrent use.
type Spool struct {
	dir     string
	lim     Limits
	log     *slog.Logger
	now     func() time.Time
	changed chan struct{}

	mu      sync.Mutex
	entries map[string]*entry
	failed  map[string]*failedEntry
	st      Stats // counters only; gauges are computed in Stats
	lastLog time.Time
	// unavailable says why the directory could not be opened (OpenDegraded); while set,
	// the spool holds nothing and Put tries the directory again first.
	unavailable string
}

// ErrUnavailable: the spool directory could not be opened (OpenDegraded); nothing is stored
// until Reopen (or a Put) finds it usable.
var ErrUnavailable = errors.New("spool unavailable")

// OpenDegraded is Open for a daemon that must run without its spool (live transcription
// needs no disk): when the directory cannot be used it returns, with Open's error, a Spool
// that holds nothing, says why in Stats().Unavailable, fails Put with ErrUnavailable
// unless the directory has become usable, and is opened for real by a successful Reopen.
func OpenDegraded(dir string, lim Limits, log *slog.Logger) (*Spool, error) {
	s, err := Open(dir, lim, log)
	if err == nil {
		return s, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s = &Spool{dir: dir, lim: lim, log: log.With("component", "spool"), now: time.Now,
		changed: make(chan struct{}, 1), entries: map[string]*entry{}, failed: map[string]*failedEntry{},
		unavailable: err.Error()}
	return s, err
}

// Reopen tries an unavailable spool's directory again (as Open: create, recover, apply the
// limits). It returns nil at once when the spool is available.
func (s *Spool) Reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unavailable == "" {
		return nil
	}
	err := s.ensureDirs()
	if err == nil {
		err = s.recover()
	}
	if err != nil {
		s.entries, s.failed = map[string]*entry{}, map[string]*failedEntry{}
		s.unavailable = err.Error()
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.unavailable = ""
	s.pruneLocked(s.now())
	s.enforceSizeLocked("")
	s.log.Info("spool directory available again", "dir", s.dir, "entries", len(s.entries))
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

// Available reports whether the spool directory is in use (see OpenDegraded).
func (s *Spool) Available() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unavailable == ""
}

// Open opens (creating) the spool directory and recovers it after a crash: temp files
// are removed, half-written entries (one file without the other) are removed and
// counted, entries whose audio is shorter than their metadata says or whose metadata
// cannot be read are moved aside, and the limits are applied.
func Open(dir string, lim Limits, log *slog.Logger) (*Spool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Spool{dir: dir, lim: lim, log: log.With("component", "spool"), now: time.Now,
		changed: make(chan struct{}, 1), entries: map[string]*entry{}, failed: map[string]*failedEntry{}}
	if err := s.ensureDirs(); err != nil {
		return nil, err
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	s.Prune()
	s.mu.Lock()
	s.enforceSizeLocked("")
	s.mu.Unlock()
	st := s.Stats()
	s.log.Info("spool opened", "dir", dir, "entries", st.Entries, "bytes", st.Bytes, "audio", st.Audio,
		"failed", st.Failed, "orphans_removed", st.Orphans)
	return s, nil
}

// ensureDirs creates the spool directory and failed/ if missing (at Open, and again by a
// Put that finds them deleted while running) and makes them private.
func (s *Spool) ensureDirs() error {
	for _, d := range []string{s.dir, filepath.Join(s.dir, failedDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create spool directory: %w", err)
		}
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(d, 0o700); err != nil {
				return fmt.Errorf("restrict spool directory: %w", err)
			}
		}
	}
	return nil
}

// Dir is the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Changed is signalled (coalesced) after every Put, so an uploader can wake at once.
func (s *Spool) Changed() <-chan struct{} { return s.changed }

func (s *Spool) path(id, ext string) string { return filepath.Join(s.dir, id+ext) }

func (s *Spool) failedPath(id, ext string) string { return filepath.Join(s.dir, failedDir, id+ext) }

func (s *Spool) recover() error {
	// Failed entries: group files by id.
	fdes, err := os.ReadDir(filepath.Join(s.dir, failedDir))
	if err != nil {
		return fmt.Errorf("read spool failed directory: %w", err)
	}
	for _, de := range fdes {
		name := de.Name()
		fi, err := de.Info()
		if err != nil || de.IsDir() {
			continue
		}
		if strings.HasPrefix(name, tmpPrefix) {
			os.Remove(filepath.Join(s.dir, failedDir, name))
			continue
		}
		id := name
		for _, ext := range []string{extReason, extResp, extMeta, extWAV} {
			if strings.HasSuffix(name, ext) {
				id = strings.TrimSuffix(name, ext)
				break
			}
		}
		f := s.failed[id]
		if f == nil {
			f = &failedEntry{id: id}
			s.failed[id] = f
		}
		f.size += fi.Size()
		if fi.ModTime().After(f.moved) {
			f.moved = fi.ModTime()
		}
	}
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read spool directory: %w", err)
	}
	wavs := map[string]int64{}
	metas := map[string]bool{}
	resps := map[string]int64{}
	for _, de := range des {
		name := de.Name()
		if de.IsDir() {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			os.Remove(filepath.Join(s.dir, name))
			s.log.Debug("removed temp file left by a crash", "file", name)
		case strings.HasSuffix(name, extResp):
			resps[strings.TrimSuffix(name, extResp)] = fi.Size()
		case strings.HasSuffix(name, extMeta):
			metas[strings.TrimSuffix(name, extMeta)] = true
		case strings.HasSuffix(name, extWAV):
			wavs[strings.TrimSuffix(name, extWAV)] = fi.Size()
		}
	}
	for id := range metas {
		b, err := os.ReadFile(s.path(id, extMeta))
		if err != nil {
			return fmt.Errorf("read spool metadata: %w", err)
		}
		wavSize, haveWAV := wavs[id]
		delete(wavs, id)
		if !haveWAV {
			// Put renames the WAV first and the metadata last, and Complete removes the
			// metadata first: a lone metadata file is not a state either leaves, so it
			// was damaged from outside. Nothing to transcribe.
			s.log.Warn("spool metadata without audio removed", "id", id)
			s.removeFiles(id, extMeta, extResp)
			delete(resps, id)
			s.st.Orphans++
			continue
		}
		m, err := ParseMeta(b)
		if err == nil && m.ID != id {
			err = fmt.Errorf("metadata names entry %q", m.ID)
		}
		if err == nil && wavSize != wavHdrSize+2*m.Samples {
			err = fmt.Errorf("audio file is %d bytes, metadata says %d samples", wavSize, m.Samples)
		}
		if err != nil {
			s.log.Warn("unreadable spool entry moved aside", "id", id, "error", err)
			if merr := s.moveFiles(id, "unreadable entry: "+err.Error(), nil); merr != nil {
				return merr
			}
			delete(resps, id)
			continue
		}
		e := &entry{meta: m, wavSize: wavSize, metaSize: int64(len(b))}
		if n, ok := resps[id]; ok {
			e.respSize = n
			delete(resps, id)
		}
		s.entries[id] = e
	}
	for id := range wavs {
		// The metadata rename never happened: Put crashed before returning.
		s.log.Warn("spool audio without metadata removed (interrupted write)", "id", id)
		s.removeFiles(id, extWAV)
		s.st.Orphans++
	}
	for id := range resps {
		s.removeFiles(id, extResp)
	}
	return fsx.SyncDir(s.dir)
}

// removeFiles removes an entry's files in the order given (callers put the commit point
// first) and fsyncs the directory.
func (s *Spool) removeFiles(id string, exts ...string) {
	for _, ext := range exts {
		if err := os.Remove(s.path(id, ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove spool file", "file", id+ext, "error", err)
		}
	}
	fsx.SyncDir(s.dir)
}

// Put stores one speech segment and returns its metadata with ID, Samples and Created
// filled in. It returns only after the entry is durable. On error nothing of the new
// entry remains and nothing stored before was touched; a full disk matches ErrNoSpace.
func (s *Spool) Put(meta Meta, samples []int16) (Meta, error) {
	m, err := s.put(meta, samples)
	if err != nil {
		s.mu.Lock()
		s.st.PutErrors++
		s.st.LastPutError = err.Error()
		s.mu.Unlock()
		// The caller reports the loss (once, then counted: the agent's Repeater); a line per
		// failed Put at Error flooded the journal on a full disk.
		s.log.Debug("spool write failed: segment not stored", "error", err, "audio", time.Duration(len(samples))*time.Second/audio.SampleRate)
		return Meta{}, err
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return m, nil
}

func (s *Spool) put(meta Meta, samples []int16) (Meta, error) {
	if len(samples) == 0 {
		return Meta{}, errNoAudio
	}
	if err := s.Reopen(); err != nil {
		return Meta{}, fmt.Errorf("spool put: %w", err)
	}
	if meta.ID == "" {
		meta.ID = newID(meta.Start)
	}
	if err := validID(meta.ID); err != nil {
		return Meta{}, err
	}
	meta.Samples = int64(len(samples))
	if meta.Samples > maxSamples {
		return Meta{}, fmt.Errorf("spool put: %w (%d samples)", ErrTooLarge, meta.Samples)
	}
	meta.Created = s.now()
	mb, err := MarshalMeta(meta)
	if err != nil {
		return Meta{}, fmt.Errorf("spool put: encode metadata: %w", err)
	}
	wavSize := wavHdrSize + 2*meta.Samples
	if s.lim.MaxBytes > 0 && wavSize+int64(len(mb)) > s.lim.MaxBytes {
		return Meta{}, fmt.Errorf("spool put %s: %w (%d bytes, limit %d)", meta.ID, ErrTooLarge, wavSize+int64(len(mb)), s.lim.MaxBytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[meta.ID]; ok {
		return Meta{}, fmt.Errorf("spool put: entry %s already exists", meta.ID)
	}
	wav := make([]byte, 0, wavSize)
	wav = append(wav, audio.WAVHeader(int(2*meta.Samples))...)
	wav = audio.AppendPCM(wav, samples)
	tmpWAV, err := fsx.WriteTemp(s.dir, tmpPrefix+meta.ID+extWAV+"-*", wav, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		// The directory was deleted while running (an operator's cleanup, a tmpfs
		// remounted): recreate it and write again, rather than lose every later segment.
		if err = s.ensureDirs(); err == nil {
			s.log.Warn("spool directory was missing and has been recreated; entries in it before are lost", "dir", s.dir)
			tmpWAV, err = fsx.WriteTemp(s.dir, tmpPrefix+meta.ID+extWAV+"-*", wav, 0o600)
		}
	}
	if err != nil {
		return Meta{}, putErr(meta.ID, err)
	}
	tmpMeta, err := fsx.WriteTemp(s.dir, tmpPrefix+meta.ID+extMeta+"-*", mb, 0o600)
	if err != nil {
		os.Remove(tmpWAV)
		return Meta{}, putErr(meta.ID, err)
	}
	testHook("temps-written")
	if err := os.Rename(tmpWAV, s.path(meta.ID, extWAV)); err != nil {
		os.Remove(tmpWAV)
		os.Remove(tmpMeta)
		return Meta{}, putErr(meta.ID, err)
	}
	testHook("wav-renamed")
	if err := os.Rename(tmpMeta, s.path(meta.ID, extMeta)); err != nil {
		os.Remove(s.path(meta.ID, extWAV))
		os.Remove(tmpMeta)
		return Meta{}, putErr(meta.ID, err)
	}
	if err := fsx.SyncDir(s.dir); err != nil {
		// The entry may not survive a power cut, but the files are in place: report the
		// problem (the caller counts it) only if removing them works, so that "error"
		// keeps meaning "not stored".
		os.Remove(s.path(meta.ID, extMeta))
		os.Remove(s.path(meta.ID, extWAV))
		return Meta{}, putErr(meta.ID, err)
	}
	s.entries[meta.ID] = &entry{meta: meta, wavSize: wavSize, metaSize: int64(len(mb))}
	s.pruneLocked(s.now())
	s.enforceSizeLocked(meta.ID)
	return meta, nil
}

// crashHook, set only by this package's tests, lets a child process stop at a named
// point inside Put so the parent can kill -9 it there.
var crashHook func(stage string)

func testHook(stage string) {
	if crashHook != nil {
		crashHook(stage)
	}
}

func putErr(id string, err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("spool put %s: %w: %w", id, ErrNoSpace, err)
	}
	return fmt.Errorf("spool put %s: %w", id, err)
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// Pending returns the unclaimed entries in capture order (Start, then ID).
func (s *Spool) Pending() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Entry, 0, len(s.entries))
	for id, e := range s.entries {
		if !e.claimed {
			out = append(out, Entry{Meta: e.meta, Path: s.path(id, extWAV), Size: e.wavSize, HasResponse: e.respSize > 0})
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := a.Meta.Start.Compare(b.Meta.Start); c != 0 {
			return c
		}
		return strings.Compare(a.Meta.ID, b.Meta.ID)
	})
	return out
}

// Claim marks an entry as being processed: it is not returned by Pending and not evicted
// until Complete, MoveAside or Release. Claims live in memory only; a restart releases
// them all, which is what a crashed upload needs.
func (s *Spool) Claim(id string) (Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok {
		return Entry{}, fmt.Errorf("claim %s: %w", id, ErrNotFound)
	}
	if e.claimed {
		return Entry{}, fmt.Errorf("claim %s: %w", id, ErrClaimed)
	}
	e.claimed = true
	return Entry{Meta: e.meta, Path: s.path(id, extWAV), Size: e.wavSize, HasResponse: e.respSize > 0}, nil
}

// Release gives a claimed entry back (to be retried later).
func (s *Spool) Release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[id]; ok {
		e.claimed = false
	}
	s.enforceSizeLocked("")
}

// SaveResponse stores the service's response next to the entry, atomically, so that a
// crash between upload and publish does not cost a second upload.
func (s *Spool) SaveResponse(id string, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok {
		return fmt.Errorf("save response %s: %w", id, ErrNotFound)
	}
	if len(body) == 0 {
		return fmt.Errorf("save response %s: empty body", id)
	}
	if err := fsx.WriteFile(s.path(id, extResp), body, 0o600); err != nil {
		if isNoSpace(err) {
			return fmt.Errorf("save response %s: %w: %w", id, ErrNoSpace, err)
		}
		return fmt.Errorf("save response %s: %w", id, err)
	}
	e.respSize = int64(len(body))
	return nil
}

// Response returns the saved response of an entry.
func (s *Spool) Response(id string) ([]byte, error) {
	s.mu.Lock()
	_, ok := s.entries[id]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("read response %s: %w", id, ErrNotFound)
	}
	return os.ReadFile(s.path(id, extResp))
}

// Complete removes an entry that was transcribed and published. The metadata goes
// first: a crash part-way leaves files that Open removes, never an entry that would be
// published again.
func (s *Spool) Complete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[id]; !ok {
		return fmt.Errorf("complete %s: %w", id, ErrNotFound)
	}
	// Forgotten in memory even if the removal fails (read-only or failing disk), so this
	// process never hands the entry out again; only a restart could.
	delete(s.entries, id)
	if err := os.Remove(s.path(id, extMeta)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("complete %s: %w", id, err)
	}
	s.removeFiles(id, extWAV, extResp)
	return nil
}

type reasonJSON struct {
	ID     string          `json:"id"`
	Reason string          `json:"reason"`
	Detail json.RawMessage `json:"detail,omitempty"`
	Moved  string          `json:"moved"`
}

// MoveAside moves an entry that can never be transcribed (e.g. the service called its
// audio corrupt) to failed/, with the reason and optional detail (JSON, e.g. the error
// response) in <id>.reason.json. Failed entries count toward MaxBytes and MaxAge and are
// evicted before pending ones.
func (s *Spool) MoveAside(id, reason string, detail []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok {
		return fmt.Errorf("move aside %s: %w", id, ErrNotFound)
	}
	if err := s.moveFiles(id, reason, detail); err != nil {
		return err
	}
	delete(s.entries, id)
	s.failed[id].audio = e.meta.Duration()
	s.log.Warn("spool entry moved aside", "id", id, "reason", reason, "dir", filepath.Join(s.dir, failedDir))
	return nil
}

func (s *Spool) moveFiles(id, reason string, detail []byte) error {
	now := s.now()
	r := reasonJSON{ID: id, Reason: reason, Moved: now.UTC().Format(time.RFC3339Nano)}
	if json.Valid(detail) {
		r.Detail = detail
	}
	rb, _ := json.MarshalIndent(r, "", "  ")
	if err := fsx.WriteFile(s.failedPath(id, extReason), rb, 0o600); err != nil {
		return fmt.Errorf("move aside %s: %w", id, err)
	}
	f := &failedEntry{id: id, moved: now, size: int64(len(rb))}
	// Audio first, metadata last, as in Put: a crash in between leaves a lone metadata
	// file that Open removes.
	for _, ext := range []string{extWAV, extMeta, extResp} {
		src := s.path(id, ext)
		fi, err := os.Stat(src)
		if err != nil {
			continue
		}
		if err := os.Rename(src, s.failedPath(id, ext)); err != nil {
			return fmt.Errorf("move aside %s: %w", id, err)
		}
		f.size += fi.Size()
	}
	fsx.SyncDir(filepath.Join(s.dir, failedDir))
	fsx.SyncDir(s.dir)
	s.failed[id] = f
	return nil
}

// Discard removes every pending entry not claimed by an upload in flight (an operator's
// request: a mute that drops what was heard before it) and returns how many it removed.
// Failed entries are left where they are.
func (s *Spool) Discard() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, e := range s.entries {
		if e.claimed {
			continue
		}
		os.Remove(s.path(id, extMeta)) // the commit point first, as in Complete
		delete(s.entries, id)
		s.removeFiles(id, extWAV, extResp)
		s.st.Discarded++
		n++
	}
	if n > 0 {
		s.log.Warn("spooled speech discarded on request", "entries", n, "discarded_total", s.st.Discarded)
	}
	return n
}

// Prune evicts entries older than MaxAge (by when they were written), failed ones
// included. It returns how many pending entries it evicted.
func (s *Spool) Prune() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pruneLocked(s.now())
}

func (s *Spool) pruneLocked(now time.Time) int {
	if s.lim.MaxAge <= 0 {
		return 0
	}
	n := 0
	for id, e := range s.entries {
		if !e.claimed && now.Sub(e.meta.Created) > s.lim.MaxAge {
			s.evictLocked(id, "older than max_age")
			n++
		}
	}
	for id, f := range s.failed {
		if now.Sub(f.moved) > s.lim.MaxAge {
			s.removeFailedLocked(id)
		}
	}
	return n
}

func (s *Spool) totalLocked() int64 {
	var n int64
	for _, e := range s.entries {
		n += e.bytes()
	}
	for _, f := range s.failed {
		n += f.size
	}
	return n
}

// enforceSizeLocked evicts failed entries, then the oldest unclaimed pending entries
// other than keep, until the spool fits MaxBytes.
func (s *Spool) enforceSizeLocked(keep string) {
	if s.lim.MaxBytes <= 0 {
		return
	}
	total := s.totalLocked()
	for total > s.lim.MaxBytes {
		var victim string
		var oldest time.Time
		for id, f := range s.failed {
			if victim == "" || f.moved.Before(oldest) {
				victim, oldest = id, f.moved
			}
		}
		if victim != "" {
			total -= s.failed[victim].size
			s.removeFailedLocked(victim)
			continue
		}
		var ve *entry
		for id, e := range s.entries {
			if e.claimed || id == keep {
				continue
			}
			if ve == nil || e.meta.Start.Before(ve.meta.Start) || e.meta.Start.Equal(ve.meta.Start) && id < victim {
				victim, ve = id, e
			}
		}
		if ve == nil {
			return // only claimed entries (and the new one) left: bounded overshoot
		}
		total -= ve.bytes()
		s.evictLocked(victim, "spool over max_bytes")
	}
}

func (s *Spool) evictLocked(id, why string) {
	e := s.entries[id]
	os.Remove(s.path(id, extMeta))
	delete(s.entries, id)
	s.removeFiles(id, extWAV, extResp)
	s.st.Evicted++
	s.st.EvictedBytes += e.bytes()
	s.st.EvictedAudio += e.meta.Duration()
	// One line per minute at Warn carries the totals; the rest go to Debug so a long
	// outage does not flood the journal.
	lvl := slog.LevelDebug
	if now := s.now(); now.Sub(s.lastLog) >= time.Minute {
		lvl, s.lastLog = slog.LevelWarn, now
	}
	s.log.Log(context.Background(), lvl, "spooled speech evicted untranscribed", "id", id, "why", why,
		"audio", e.meta.Duration(), "evicted_total", s.st.Evicted, "evicted_audio_total", s.st.EvictedAudio)
}

func (s *Spool) removeFailedLocked(id string) {
	for _, ext := range []string{extReason, extMeta, extWAV, extResp} {
		os.Remove(s.failedPath(id, ext))
	}
	delete(s.failed, id)
}

// Stats returns the current counters and gauges.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Unavailable = s.unavailable
	for _, e := range s.entries {
		st.Entries++
		st.Bytes += e.bytes()
		st.Audio += e.meta.Duration()
		if st.Oldest.IsZero() || e.meta.Start.Before(st.Oldest) {
			st.Oldest = e.meta.Start
		}
	}
	for _, f := range s.failed {
		st.Failed++
		st.FailedBytes += f.size
		st.Bytes += f.size
	}
	return st
}
