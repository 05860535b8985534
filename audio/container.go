package audio

import "bytes"

// Container is an audio file format recognised from its first bytes.
type Container struct {
	Name        string // for messages: "WAV", "FLAC", "MP3", "Ogg/Opus", "MP4/M4A", "WebM", ...
	ContentType string // the media type to send it as
}

// SniffLen is how many leading bytes SniffContainer wants (fewer for a shorter file).
const SniffLen = 64

// Containers lists, for messages, the formats SniffContainer recognises.
const Containers = "WAV, FLAC, MP3, Ogg (Opus, Vorbis), MP4/M4A, WebM/Matroska, AAC, AIFF, AMR"

// SniffContainer recognises an audio container by its signature (magic bytes), never by a
// file name: a FLAC file named .wav is FLAC. b holds the first SniffLen bytes of the file.
// Headerless PCM has no signature and is not recognised.
func SniffContainer(b []byte) (Container, bool) {
	at := func(off int, sig string) bool { return len(b) >= off+len(sig) && string(b[off:off+len(sig)]) == sig }
	switch {
	case at(0, "RIFF") && at(8, "WAVE"):
		return Container{"WAV", "audio/wav"}, true
	case at(0, "fLaC"):
		return Container{"FLAC", "audio/flac"}, true
	case at(0, "OggS"):
		switch {
		case bytes.Contains(b, []byte("OpusHead")):
			return Container{"Ogg/Opus", "audio/ogg"}, true
		case bytes.Contains(b, []byte("\x01vorbis")):
			return Container{"Ogg/Vorbis", "audio/ogg"}, true
		}
		return Container{"Ogg", "audio/ogg"}, true
	case at(4, "ftyp"):
		return Container{"MP4/M4A", "audio/mp4"}, true
	case at(0, "\x1a\x45\xdf\xa3"): // EBML
		if bytes.Contains(b, []byte("webm")) {
			return Container{"WebM", "audio/webm"}, true
		}
		return Container{"Matroska", "audio/x-matroska"}, true
	case at(0, "ID3"): // an ID3v2 tag, in front of MPEG audio
		return Container{"MP3", "audio/mpeg"}, true
	case at(0, "FORM") && (at(8, "AIFF") || at(8, "AIFC")):
		return Container{"AIFF", "audio/aiff"}, true
	case at(0, "#!AMR"):
		return Container{"AMR", "audio/amr"}, true
	case len(b) >= 3 && b[0] == 0xFF && b[1]&0xE0 == 0xE0:
		return sniffMPEGSync(b)
	}
	return Container{}, false
}

// sniffMPEGSync checks a frame header that starts with the 11-bit sync word: MPEG audio
// (MP3) or ADTS (AAC). The reserved values are checked too, so headerless PCM that happens
// to start with 0xFF 0xFF is not taken for MP3.
func sniffMPEGSync(b []byte) (Container, bool) {
	version, layer := (b[1]>>3)&3, (b[1]>>1)&3
	if layer == 0 { // ADTS: MPEG-4 AAC
		if (b[2]>>2)&0xF >= 13 { // sampling frequency index
			return Container{}, false
		}
		return Container{"AAC", "audio/aac"}, true
	}
	bitrate, rate := b[2]>>4, (b[2]>>2)&3
	if version == 1 || bitrate == 0xF || rate == 3 {
		return Container{}, false
	}
	return Container{"MP3", "audio/mpeg"}, true
}
