package dgemu

// The JSON shapes the service sends. Field order and names follow the service's
// responses so a byte-level diff against a real capture stays readable.

type alternative struct {
	Transcript string  `json:"transcript"`
	Confidence float64 `json:"confidence"`
	Words      []word  `json:"words"`
}

type channelJSON struct {
	Alternatives []alternative `json:"alternatives"`
}

type resultsMeta struct {
	RequestID string            `json:"request_id"`
	ModelInfo modelInfo         `json:"model_info"`
	ModelUUID string            `json:"model_uuid"`
	Extra     map[string]string `json:"extra,omitempty"`
}

type resultsMsg struct {
	Type         string      `json:"type"`
	ChannelIndex []int       `json:"channel_index"`
	Duration     float64     `json:"duration"`
	Start        float64     `json:"start"`
	IsFinal      bool        `json:"is_final"`
	SpeechFinal  bool        `json:"speech_final"`
	Channel      channelJSON `json:"channel"`
	Metadata     resultsMeta `json:"metadata"`
	FromFinalize bool        `json:"from_finalize"`
}

// metadataMsg is the live Metadata message: the pre-recorded response's metadata with a
// type (encoding/json flattens the embedded struct). The service sends models,
// model_info and extra here although the published AsyncAPI schema declares none of them
// (docs/emulator.md, "Where the published spec and the service differ").
type metadataMsg struct {
	Type string `json:"type"`
	restMetadata
}

type utteranceEndMsg struct {
	Type        string  `json:"type"`
	Channel     []int   `json:"channel"`
	LastWordEnd float64 `json:"last_word_end"`
}

type speechStartedMsg struct {
	Type      string  `json:"type"`
	Channel   []int   `json:"channel"`
	Timestamp float64 `json:"timestamp"`
}

type errorMsg struct {
	Type        string `json:"type"`
	Description string `json:"description"`
	Message     string `json:"message"`
	Variant     string `json:"variant"`
}

// Pre-recorded response.

type restMetadata struct {
	TransactionKey string  `json:"transaction_key"`
	RequestID      string  `json:"request_id"`
	SHA256         string  `json:"sha256"`
	Created        string  `json:"created"`
	Duration       float64 `json:"duration"`
	Channels       int     `json:"channels"`
	// Models and ModelInfo are absent from a live Metadata message when no audio was
	// received, as the service sends it; the pre-recorded response always has them.
	Models []string `json:"models,omitempty"`
	// model_info is keyed by model uuid; the OpenAPI schema gives it no properties.
	ModelInfo map[string]modelInfo `json:"model_info,omitempty"`
	Extra     map[string]string    `json:"extra,omitempty"`
}

type restUtterance struct {
	Start      float64 `json:"start"`
	End        float64 `json:"end"`
	Confidence float64 `json:"confidence"`
	Channel    int     `json:"channel"`
	Transcript string  `json:"transcript"`
	Words      []word  `json:"words"`
	ID         string  `json:"id"`
}

type restChannel struct {
	Alternatives []alternative `json:"alternatives"`
}

type restResults struct {
	Channels   []restChannel    `json:"channels"`
	Utterances *[]restUtterance `json:"utterances,omitempty"` // pointer: present and empty with utterances=true
}

type restResponse struct {
	Metadata restMetadata `json:"metadata"`
	Results  restResults  `json:"results"`
}

// errorBody is a refusal's JSON body, the legacy branch of the spec's ErrorResponse. The
// 503 form uses error_code instead of err_code, as observed from the service though the
// spec has no such member.
type errorBody struct {
	ErrCode   string `json:"err_code,omitempty"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrMsg    string `json:"err_msg"`
	RequestID string `json:"request_id"`
}
