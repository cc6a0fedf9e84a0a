package boltstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/store"
	bolt "go.etcd.io/bbolt"
)

// The indexes, kept in the same transactions as what they index, so that
// neither the sender nor the reaper walks every record:
//
//	bycall:    len(call) (2 bytes) + call + seq -> empty; every event of a
//	           call, in its delivery order.
//	heads:     call -> the due key of its first readable event when that
//	           one is pending, followed by the event's stored account (see
//	           storedAccount); "f" when it failed (it holds the call back).
//	due:       rank (store.Record.Rank: 0 live transfer, 1 other live,
//	           2 backfill transfer, 3 other backfill; a file written
//	           before classes has only 0 and 1) + next attempt + seq ->
//	           call; one entry a call: its head, when pending. The default
//	           account's; another account's is "due:NAME", so that each
//	           account's sender reads only its own.
//	deadlines: 'o' + opened + call for an open call, 'c' + updated + call
//	           for a closed one -> empty.
//	calldl:    call -> its deadlines key, to move it when the call changes.
//
// Times are 12 bytes: the Unix second with the sign bit flipped (so that
// byte order is time order), then the nanoseconds.
var (
	bucketByCall    = []byte("bycall")
	bucketHeads     = []byte("heads")
	bucketDue       = []byte("due")
	bucketDeadlines = []byte("deadlines")
	bucketCallDL    = []byte("calldl")
)

var indexBuckets = [][]byte{bucketByCall, bucketHeads, bucketDue, bucketDeadlines, bucketCallDL}

const (
	timeKeyLen   = 12
	dueKeyLen    = 1 + timeKeyLen + 8
	deadlineOpen = 'o'
	deadlineDone = 'c'
)

// headFailed is the heads value of a call whose first event failed: not in
// due, and nothing of the call after it is either.
var headFailed = []byte("f")

func timeKey(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

func timeOf(k []byte) time.Time {
	s := int64(binary.BigEndian.Uint64(k) ^ (1 << 63))
	return time.Unix(s, int64(binary.BigEndian.Uint32(k[8:]))).UTC()
}

func dueKey(seq uint64, rec *store.Record) []byte {
	k := timeKey(append(make([]byte, 0, dueKeyLen), byte(rec.Rank())), rec.Next)
	return binary.BigEndian.AppendUint64(k, seq)
}

// dueBucket is the name of account's due index.
func dueBucket(account string) []byte {
	if account == store.DefaultAccount {
		return bucketDue
	}
	return []byte(string(bucketDue) + ":" + account)
}

// isDueBucket reports whether name is an account's due index.
func isDueBucket(name []byte) bool {
	return bytes.Equal(name, bucketDue) || bytes.HasPrefix(name, []byte(string(bucketDue)+":"))
}

func callPrefix(call string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(call))), call...)
}

func byCallKey(call string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(callPrefix(call), seq)
}

// indexEvent adds event seq to its call's list and makes it the call's head
// when the call had none.
func indexEvent(tx *bolt.Tx, seq uint64, call string) error {
	if err := tx.Bucket(bucketByCall).Put(byCallKey(call, seq), nil); err != nil {
		return fmt.Errorf("index event %d: %w", seq, err)
	}
	if tx.Bucket(bucketHeads).Get([]byte(call)) != nil {
		return nil // a later event waits behind the head
	}
	return refreshHead(tx, call)
}

// unindexEvent removes event seq from its call's list and finds the call's
// head again.
func unindexEvent(tx *bolt.Tx, seq uint64, call string) error {
	if err := tx.Bucket(bucketByCall).Delete(byCallKey(call, seq)); err != nil {
		return fmt.Errorf("unindex event %d: %w", seq, err)
	}
	return refreshHead(tx, call)
}

// refreshHead sets call's entries in heads and due from its stored events:
// the first one that can be decoded is its head (an unreadable record holds
// nothing back). It only reads the call's first events, and gives the same
// result however often it runs.
func refreshHead(tx *bolt.Tx, call string) error {
	heads := tx.Bucket(bucketHeads)
	if old := heads.Get([]byte(call)); len(old) >= dueKeyLen {
		due := tx.Bucket(dueBucket(store.AccountName(string(old[dueKeyLen:]))))
		if due != nil {
			if err := due.Delete(old[:dueKeyLen]); err != nil {
				return fmt.Errorf("index call %q: %w", call, err)
			}
		}
	}
	prefix := callPrefix(call)
	c := tx.Bucket(bucketByCall).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		seq := seqOf(k[len(prefix):])
		rec, err := getRecord(tx, seq)
		if err != nil || rec == nil || rec.Call != call {
			continue
		}
		head := headFailed
		if rec.State == store.StatePending {
			key := dueKey(seq, rec)
			due, err := tx.CreateBucketIfNotExists(dueBucket(rec.AccountName()))
			if err != nil {
				return fmt.Errorf("index call %q: %w", call, err)
			}
			if err := due.Put(key, []byte(call)); err != nil {
				return fmt.Errorf("index call %q: %w", call, err)
			}
			head = append(key, rec.Account...)
		}
		if err := heads.Put([]byte(call), head); err != nil {
			return fmt.Errorf("index call %q: %w", call, err)
		}
		return nil
	}
	if err := heads.Delete([]byte(call)); err != nil {
		return fmt.Errorf("index call %q: %w", call, err)
	}
	return nil
}

func deadlineKey(base string, c callstate.Call) []byte {
	kind, at := byte(deadlineDone), c.Updated
	if c.Open {
		kind, at = deadlineOpen, c.Opened
	}
	return append(timeKey([]byte{kind}, at), base...)
}

// indexCall files call base under its deadline (nil c: forgotten).
func indexCall(tx *bolt.Tx, base string, c *callstate.Call) error {
	dl, back := tx.Bucket(bucketDeadlines), tx.Bucket(bucketCallDL)
	if old := back.Get([]byte(base)); old != nil {
		if err := dl.Delete(old); err != nil {
			return fmt.Errorf("index call %q: %w", base, err)
		}
	}
	if c == nil {
		if err := back.Delete([]byte(base)); err != nil {
			return fmt.Errorf("index call %q: %w", base, err)
		}
		return nil
	}
	k := deadlineKey(base, *c)
	if err := dl.Put(k, nil); err != nil {
		return fmt.Errorf("index call %q: %w", base, err)
	}
	if err := back.Put([]byte(base), k); err != nil {
		return fmt.Errorf("index call %q: %w", base, err)
	}
	return nil
}

// callsDue lists the calls filed under kind at or before by.
func callsDue(tx *bolt.Tx, kind byte, by time.Time) []string {
	limit := timeKey(nil, by)
	var out []string
	c := tx.Bucket(bucketDeadlines).Cursor()
	for k, _ := c.Seek([]byte{kind}); k != nil && k[0] == kind && len(k) > timeKeyLen; k, _ = c.Next() {
		if bytes.Compare(k[1:1+timeKeyLen], limit) > 0 {
			break
		}
		out = append(out, string(k[1+timeKeyLen:]))
	}
	return out
}

// ensureIndexes builds the indexes of a file written before they existed,
// once: in the transaction that creates their buckets.
func ensureIndexes(tx *bolt.Tx) error {
	if tx.Bucket(bucketDue) != nil {
		return nil
	}
	if err := rebuildEventIndexes(tx); err != nil {
		return fmt.Errorf("build indexes: %w", err)
	}
	if err := rebuildCallIndex(tx); err != nil {
		return fmt.Errorf("build indexes: %w", err)
	}
	return nil
}

func resetBuckets(tx *bolt.Tx, names ...[]byte) error {
	for _, name := range names {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("reset bucket %s: %w", name, err)
			}
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("reset bucket %s: %w", name, err)
		}
	}
	return nil
}

// rebuildEventIndexes rebuilds the per-call counts, lists and heads from
// every stored event: for a new index, and for a record whose call cannot
// be read (see Drop).
func rebuildEventIndexes(tx *bolt.Tx) error {
	if err := resetBuckets(tx, bucketQueued, bucketByCall, bucketHeads, bucketDue); err != nil {
		return err
	}
	var others [][]byte
	err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		if isDueBucket(name) && !bytes.Equal(name, bucketDue) {
			others = append(others, bytes.Clone(name))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range others {
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("reset bucket %s: %w", name, err)
		}
	}
	calls := map[string]bool{}
	err = tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
		call := callOf(v)
		if call == "" {
			return nil
		}
		calls[call] = true
		if err := addQueued(tx, call, 1); err != nil {
			return err
		}
		return tx.Bucket(bucketByCall).Put(byCallKey(call, seqOf(k)), nil)
	})
	if err != nil {
		return err
	}
	for call := range calls {
		if err := refreshHead(tx, call); err != nil {
			return err
		}
	}
	return nil
}

// rebuildCallIndex files every readable call record under its deadline;
// an unreadable one is left out, as the reaper left it alone.
func rebuildCallIndex(tx *bolt.Tx) error {
	if err := resetBuckets(tx, bucketDeadlines, bucketCallDL); err != nil {
		return err
	}
	calls := map[string]callstate.Call{}
	err := tx.Bucket(bucketCalls).ForEach(func(k, v []byte) error {
		var c callstate.Call
		if json.Unmarshal(v, &c) == nil {
			calls[string(k)] = c
		}
		return nil
	})
	if err != nil {
		return err
	}
	for base, c := range calls {
		if err := indexCall(tx, base, &c); err != nil {
			return err
		}
	}
	return nil
}
