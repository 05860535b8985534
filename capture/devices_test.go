package capture

import "testing"

func TestALSAPlugin(t *testing.T) {
	for id, plugin := range map[string]bool{
		":0,0": false, ":1,0": false, "hw:1,0": false, "plughw:CARD=Device,DEV=0": false, "default": false,
		"sysdefault:CARD=PCH": false, "dsnoop:CARD=Device,DEV=0": false, "default:CARD=Device": false,
		"null": true, "lavrate": true, "samplerate": true, "speexrate": true, "jack": true, "oss": true,
		"pulse": true, "speex": true, "upmix": true, "vdownmix": true, "pipewire": true, "dmix": true,
	} {
		if got := alsaPlugin(id); got != plugin {
			t.Errorf("alsaPlugin(%q) = %v, want %v", id, got, plugin)
		}
	}
}
