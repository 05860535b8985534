package mqttlink

import "github.com/eclipse/paho.mqtt.golang/packets"

// nullStore is paho's message store, deliberately empty.
//
// With a store, paho re-sends its copies of unacknowledged messages when it reconnects and,
// doing so, completes the original tokens without any PUBACK; it also races the publishes
// made right after OnConnect, so a re-sent old message can overtake newer ones. Our own
// queues are the source of truth (the disk queue for transcripts, the outbox for events and
// responses, latest values for retained messages): whatever lacks a PUBACK when the
// connection drops is sent again by this package, in order, after the reconnection.
//
// The cost: paho keeps the message id of a token abandoned at a connection loss (at most
// one per sender goroutine per loss, only when a message was in flight), out of 65535.
type nullStore struct{}

func (nullStore) Open()                             {}
func (nullStore) Put(string, packets.ControlPacket) {}
func (nullStore) Get(string) packets.ControlPacket  { return nil }
func (nullStore) All() []string                     { return nil }
func (nullStore) Del(string)                        {}
func (nullStore) Close()                            {}
func (nullStore) Reset()                            {}
