package calls

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/movidesk-agi/movidesk-agi/outbox"
)

// The fallback spool is where the dialplan writes an event when it could
// not reach this service (AGISTATUS is not SUCCESS), one line per event,
// with Asterisk's FILE(path,,,al). The service imports each line once: the
// position reached is stored in the outbox in the same transaction as the
// events the line produced.
//
// A line is
//
//	movidesk-agi/1 ROUTE EPOCH QUERY
//
// where QUERY is URL-encoded: uniqueid, channel, context, callerid (the AGI
// environment), linkedid, connectedline, queuename, mastercontext,
// memberinterface, dialedpeernumber, cdrstart (the channel variables a
// handler reads), and arg, repeated, for the key=value arguments the AGI
// would have had. A line without a key reads that variable as empty.
const (
	spoolMagic  = "movidesk-agi/1"
	SpoolHeader = "# movidesk-agi fallback spool: one line per call event written by the dialplan while the service was unreachable\n"
	// maxSpoolLine bounds a line; a longer one is skipped with an error.
	maxSpoolLine = 16 << 10
)

// spoolVars maps a line's keys to the channel variables they stand for.
var spoolVars = map[string]string{
	"linkedid":         "CHANNEL(linkedid)",
	"connectedline":    "CONNECTEDLINE(num)",
	"queuename":        "QUEUENAME",
	"mastercontext":    "MASTER_CHANNEL(CONTEXT)",
	"memberinterface":  "MEMBERINTERFACE",
	"dialedpeernumber": "DIALEDPEERNUMBER",
	"cdrstart":         "CDR(start,u)",
}

// spoolMark is how far a spool file was imported.
type spoolMark struct {
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// PrepareSpool creates the spool file with its header line when it is
// missing or empty: Asterisk's FILE() appends only to a file that already
// holds a complete line. mode is applied to a new file.
func PrepareSpool(path string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("spool %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, mode)
	if err != nil {
		return fmt.Errorf("spool %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("spool %s: %w", path, err)
	}
	if st.Size() == 0 {
		if _, err := f.WriteString(SpoolHeader); err != nil {
			return fmt.Errorf("spool %s: write header: %w", path, err)
		}
		if err := f.Chmod(mode); err != nil {
			return fmt.Errorf("spool %s: %w", path, err)
		}
	}
	return nil
}

// WatchSpool imports the spool at path now and then every interval until
// ctx ends. Errors are logged; a line that cannot be stored is tried again
// on the next pass.
func (h *Handlers) WatchSpool(ctx context.Context, path string, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := h.ImportSpool(ctx, path); err != nil && ctx.Err() == nil {
			h.log.Error().Err(err).Str("spool", path).Msg("fallback spool import stopped; trying again")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ImportSpool imports the lines added to the spool since the last import
// and returns how many events it stored.
func (h *Handlers) ImportSpool(ctx context.Context, path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("spool %s: %w", path, err)
	}
	var inode uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		inode = sys.Ino
	}
	key := "spool:" + path
	var mark spoolMark
	if b, err := h.out.Mark(key); err != nil {
		return 0, err
	} else if b != nil {
		if err := json.Unmarshal(b, &mark); err != nil {
			return 0, fmt.Errorf("spool %s: stored position unreadable: %w", path, err)
		}
	}
	if mark.Inode != inode || st.Size() < mark.Offset {
		// A new or truncated file (rotated): read it from the start.
		if mark.Offset > 0 {
			h.log.Info().Str("spool", path).Msg("fallback spool was replaced or truncated; importing it from the start")
		}
		mark = spoolMark{Inode: inode}
	}
	if st.Size() == mark.Offset {
		return 0, nil
	}
	if _, err := f.Seek(mark.Offset, io.SeekStart); err != nil {
		return 0, fmt.Errorf("spool %s: %w", path, err)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	n := 0
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Skip an absurd line whole rather than import a part of it.
			skipped := int64(len(line))
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				skipped += int64(len(line))
			}
			if err != nil {
				return n, nil // incomplete: wait for its end
			}
			mark.Offset += skipped
			h.log.Error().Str("spool", path).Int64("offset", mark.Offset-skipped).Int64("bytes", skipped).Msg("fallback spool line too long; skipped")
			if err := h.saveMark(key, mark); err != nil {
				return n, err
			}
			continue
		}
		if err != nil {
			// EOF, possibly after a line Asterisk has not finished: it is
			// read again, whole, next time.
			return n, nil
		}
		at := mark.Offset
		next := mark
		next.Offset += int64(len(line))
		stored, err := h.importLine(ctx, path, at, bytes.TrimRight(line, "\r\n"), key, next)
		if err != nil {
			return n, err
		}
		n += stored
		mark = next
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
	}
}

func (h *Handlers) saveMark(key string, m spoolMark) error {
	b, _ := json.Marshal(m)
	return h.out.SetMark(key, b)
}

// importLine stores the events of one line together with the new position.
// It returns an error only when nothing could be stored, so the line is
// read again.
func (h *Handlers) importLine(ctx context.Context, path string, at int64, line []byte, key string, next spoolMark) (int, error) {
	text := string(line)
	if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
		return 0, h.saveMark(key, next)
	}
	route, c, err := h.parseSpoolLine(text)
	if err != nil {
		h.log.Error().Str("spool", path).Int64("offset", at).Str("line", clip(text)).Err(err).Msg("fallback spool line not understood; skipped")
		return 0, h.saveMark(key, next)
	}
	b, _ := json.Marshal(next)
	start := time.Now()
	o := h.run(outbox.WithMark(ctx, key, b), route, h.routes[route], c)
	h.logEvent(o, start, func(le *zerolog.Event) { le.Str("source", "spool") })
	if o.err != nil && !isInput(o.err) && !isPermanent(o.err) {
		return 0, o.err
	}
	if o.err != nil || o.ev.out.Result == outbox.Duplicate {
		// Nothing was stored with the position.
		return 0, h.saveMark(key, next)
	}
	return len(o.ev.out.Sent), nil
}

func (h *Handlers) parseSpoolLine(text string) (string, *channel, error) {
	f := strings.Fields(text)
	if len(f) < 3 || len(f) > 4 || f[0] != spoolMagic {
		return "", nil, fmt.Errorf("want %q ROUTE EPOCH QUERY", spoolMagic)
	}
	route := f[1]
	if _, ok := h.routes[route]; !ok {
		return "", nil, fmt.Errorf("unknown route %q", route)
	}
	when, ok := parseEpoch(f[2])
	if !ok {
		return "", nil, fmt.Errorf("bad epoch %q", f[2])
	}
	var q url.Values
	if len(f) == 4 {
		var err error
		if q, err = url.ParseQuery(f[3]); err != nil {
			return "", nil, fmt.Errorf("bad query: %w", err)
		}
	}
	args := map[string]string{}
	for _, a := range q["arg"] {
		if k, v, ok := strings.Cut(a, "="); ok && k != "" {
			args[k] = v
		}
	}
	vars := map[string]string{}
	for k, name := range spoolVars {
		vars[name] = q.Get(k)
	}
	c := &channel{
		cfg:      &h.cfg,
		args:     args,
		now:      when,
		uniqueID: q.Get("uniqueid"),
		callerID: q.Get("callerid"),
		context:  q.Get("context"),
		name:     q.Get("channel"),
		read:     func(name string) (string, error) { return "", nil },
		vars:     vars,
	}
	return route, c, nil
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
