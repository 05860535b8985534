package mqttlink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/hark-audio/hark/internal/fsx"
)

// The retained topics a device publishes outlive it on the broker: Home Assistant keeps
// showing the entities of a device whose discovery was turned off or that was renamed
// (another device_id or topic_prefix), and fleet tools keep listing its old state. So the
// client remembers, in a file under the state directory, every retained topic it has
// published, and at each connection clears (an empty retained message, as Home Assistant
// documents for removing an entity) those it no longer publishes.

// announcedFile is the record of retained topics published, as stored.
type announcedFile struct {
	Topics []string `json:"topics"`
}

// readAnnounced reads the record; a missing file is an empty record.
func readAnnounced(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f announcedFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f.Topics, nil
}

func writeAnnounced(path string, topics []string) error {
	b, err := json.Marshal(announcedFile{Topics: topics})
	if err != nil {
		return err
	}
	return fsx.WriteFile(path, b, 0o600)
}

// retainedTopics lists what this client publishes retained: availability, state, config,
// health and, with discovery on, one config per Home Assistant entity. Sorted.
func (c *Client) retainedTopics() []string {
	topics := []string{c.t.availability}
	for _, r := range c.retained {
		topics = append(topics, r.topic)
	}
	slices.Sort(topics)
	return topics
}

// clearStale runs at each connection, before the retained messages are sent again: it
// clears the retained topics published by an earlier configuration and no longer
// published, then records the current set. The record is widened before anything is
// cleared, so a crash in between forgets nothing.
func (c *Client) clearStale(ctx context.Context, s linkState) error {
	if c.o.AnnouncedFile == "" {
		return nil
	}
	current := c.retainedTopics()
	c.mu.Lock()
	before := c.announced
	c.mu.Unlock()
	var stale []string
	for _, t := range before {
		if !slices.Contains(current, t) {
			stale = append(stale, t)
		}
	}
	if len(stale) == 0 && slices.Equal(before, current) {
		return nil
	}
	union := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(before), current...))))
	if err := writeAnnounced(c.o.AnnouncedFile, union); err != nil {
		c.log.Warn("cannot record the retained topics published; stale ones may stay on the broker", "err", err)
		return nil
	}
	if len(stale) == 0 {
		c.mu.Lock()
		c.announced = current
		c.mu.Unlock()
		return nil
	}
	for _, t := range stale {
		if err := c.await(ctx, c.pc.Publish(t, 1, true, []byte{}), s); err != nil {
			return fmt.Errorf("clear retained %s: %w", t, err)
		}
	}
	c.log.Info("cleared retained topics no longer published (Home Assistant entities removed)", "topics", stale)
	if err := writeAnnounced(c.o.AnnouncedFile, current); err != nil {
		c.log.Warn("cannot record the retained topics published", "err", err)
	}
	c.mu.Lock()
	c.announced = current
	c.mu.Unlock()
	return nil
}
