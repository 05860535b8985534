// Package uplink groups the two ways hark gets speech transcribed by Deepgram: live
// streaming over a websocket (package uplink/live, the normal path) and the on-disk spool
// plus pre-recorded upload (uplink/spool, uplink/batch) for speech the live stream could not
// confirm. The packages know nothing of each other; the agent routes live.Segment values
// handed over by uplink/live into the spool.
package uplink
