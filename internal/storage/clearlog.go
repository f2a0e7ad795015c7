package storage

import "fmt"

// ClearLog deletes every entry of rangeID's log, as when a snapshot
// replaces the log; the caller records the new truncated state.
func (b *Batch) ClearLog(rangeID uint64) error {
	lower, upper := logSpan(rangeID)
	if err := b.b.DeleteRange(lower, upper, nil); err != nil {
		return fmt.Errorf("storage: range %d: clear log: %w", rangeID, err)
	}
	return nil
}
