// Package mqttlink makes hark a good citizen of an MQTT fleet: it publishes transcripts,
// interim results, events, state, configuration and health under <prefix>/<device_id>,
// keeps an availability topic with a last will, answers remote requests, and announces the
// device to Home Assistant. It is built on paho.mqtt.golang (MQTT 3.1.1), so requests and
// responses are correlated by a "transaction" field in the payload. Topics and payloads are
// documented in docs/mqtt.md.
//
// The agent uses it like this:
//
//	c, err := mqttlink.New(mqttlink.Options{Broker: ..., DeviceID: ..., QueueDir: stateDir + "/mqtt-queue", Handler: h, ...})
//	c.Start(ctx)                  // connects in the background, retries for ever
//	c.SetState(state)             // retained, re-sent on every connection
//	c.PublishTranscript(u)        // durable: on disk before it returns
//	...
//	c.Close(shutdownCtx)          // flush (bounded), availability "offline", disconnect
//
// Guarantees:
//   - No method but Close waits for the network; a broker that is down at boot, restarts or
//     stalls never blocks capture or streaming.
//   - Transcripts are appended to an on-disk queue (one fsync'd file per message) and
//     delivered by one sender goroutine in order at QoS 1, each removed only after its PUBACK:
//     at-least-once and in order across broker restarts and hark restarts. A message in
//     flight when the connection drops is sent again, so a consumer may rarely see a
//     duplicate (same seq and start); it never sees a gap or a reordering. The queue holds
//     at most QueueMax entries; beyond that the oldest is dropped, counted (Stats) and logged.
//   - Events and responses wait in a bounded memory queue while offline; interim results
//     are dropped while offline. State, config, health and discovery are "latest value"
//     retained messages, re-sent on every connection with availability "online".
//   - Requests on <base>/request/<op> are handled one at a time in arrival order on a
//     goroutine of this package; paho's goroutines never block. A full request queue is
//     answered "busy"; malformed requests get an error response.
//
// Package brokertest runs a real mosquitto for tests, here and in the agent's.
package mqttlink
