package boltstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/store"
	bolt "go.etcd.io/bbolt"
)

// CheckIndexes compares the indexes with what they should hold, worked
// out from every event and call the slow way (the first readable event of
// each call in sequence order is its head): an error names each index
// that differs. It reads the whole file: for tests and for an
// administrator who suspects the file.
func (s *Store) CheckIndexes() error {
	return s.db.View(func(tx *bolt.Tx) error {
		byCall, heads, due := map[string]string{}, map[string]string{}, map[string]string{}
		err := tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			call := callOf(v)
			if call == "" {
				return nil
			}
			byCall[string(byCallKey(call, seqOf(k)))] = ""
			var rec store.Record
			if json.Unmarshal(v, &rec) != nil {
				return nil
			}
			if _, ok := heads[call]; ok {
				return nil
			}
			heads[call] = string(headFailed)
			if rec.State == store.StatePending {
				key := string(dueKey(seqOf(k), &rec))
				heads[call] = key + rec.Account
				due[key] = call
			}
			return nil
		})
		if err != nil {
			return err
		}
		deadlines, back := map[string]string{}, map[string]string{}
		err = tx.Bucket(bucketCalls).ForEach(func(k, v []byte) error {
			var c callstate.Call
			if json.Unmarshal(v, &c) == nil {
				key := string(deadlineKey(string(k), c))
				deadlines[key], back[string(k)] = "", key
			}
			return nil
		})
		if err != nil {
			return err
		}
		var errs []error
		for _, b := range []struct {
			name []byte
			want map[string]string
		}{{bucketByCall, byCall}, {bucketHeads, heads}, {bucketDue, due}, {bucketDeadlines, deadlines}, {bucketCallDL, back}} {
			got := map[string]string{}
			if bk := tx.Bucket(b.name); bk != nil {
				bk.ForEach(func(k, v []byte) error {
					got[string(k)] = string(v)
					return nil
				})
			}
			if !maps.Equal(b.want, got) {
				errs = append(errs, fmt.Errorf("index %s holds %q, want %q", b.name, got, b.want))
			}
		}
		return errors.Join(errs...)
	})
}
