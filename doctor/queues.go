package doctor

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Queue variables are read from queues.conf, not from Asterisk: neither
// `queue show` nor any other CLI command shows setinterfacevar or
// setqueuevar. The file is read as Asterisk does for what matters here:
// #include and #tryinclude (relative to the file's folder), `[name](tpl)`
// inheritance from templates, `key = value` and `key => value`.

type confSection struct {
	templates []string
	values    map[string]string
}

// readConf reads an Asterisk configuration file into its sections. cur is
// the section the file starts in: as in Asterisk, an #include goes on in
// the section it is written in (FreePBX's cdr.conf includes its [general]
// keys so), and the including file goes on in the one the included ended in.
func readConf(path string, sections map[string]*confSection, order *[]string, depth int, cur *confSection) (*confSection, error) {
	if depth > 10 {
		return cur, fmt.Errorf("doctor: %s: #include nested too deep", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return cur, fmt.Errorf("doctor: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "#include") || strings.HasPrefix(line, "#tryinclude"):
			_, arg, _ := strings.Cut(line, " ")
			arg = strings.Trim(strings.TrimSpace(arg), `"<>`)
			if !filepath.IsAbs(arg) {
				arg = filepath.Join(filepath.Dir(path), arg)
			}
			next, err := readConf(arg, sections, order, depth+1, cur)
			if err != nil && strings.HasPrefix(line, "#include") {
				return cur, err
			}
			if err == nil {
				cur = next
			}
		case strings.HasPrefix(line, "["):
			name, rest, _ := strings.Cut(line[1:], "]")
			s := sections[name]
			if s == nil {
				s = &confSection{values: map[string]string{}}
				sections[name] = s
				*order = append(*order, name)
			}
			if o, c := strings.IndexByte(rest, '('), strings.LastIndexByte(rest, ')'); o >= 0 && c > o {
				for _, t := range strings.Split(rest[o+1:c], ",") {
					if t = strings.TrimSpace(t); t != "" && t != "!" && t != "+" {
						s.templates = append(s.templates, t)
					}
				}
			}
			cur = s
		case cur != nil:
			k, v, found := strings.Cut(line, "=")
			if !found {
				continue
			}
			v = strings.TrimPrefix(v, ">")
			cur.values[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return cur, fmt.Errorf("doctor: %s: %w", path, err)
	}
	return cur, nil
}

// lookup finds key in section name or, failing that, in its templates.
func lookup(sections map[string]*confSection, name, key string, depth int) (string, bool) {
	s := sections[name]
	if s == nil || depth > 10 {
		return "", false
	}
	if v, found := s.values[key]; found {
		return v, true
	}
	for i := len(s.templates) - 1; i >= 0; i-- {
		if v, found := lookup(sections, s.templates[i], key, depth+1); found {
			return v, true
		}
	}
	return "", false
}

func yes(v string) bool {
	switch strings.ToLower(v) {
	case "yes", "true", "y", "t", "1", "on":
		return true
	}
	return false
}

// CheckQueues reads queues.conf (path) and checks that each queue named
// exists and sets setinterfacevar and setqueuevar: without them the
// agent and the queue reach the service empty.
func CheckQueues(path string, queues []string) []Result {
	sections := map[string]*confSection{}
	var order []string
	if _, err := readConf(path, sections, &order, 0, nil); err != nil {
		return []Result{fail("queues.conf readable", err.Error(),
			"run the doctor as root or in Asterisk's group, and give the path of queues.conf (usually /etc/asterisk/queues.conf)")}
	}
	var res []Result
	for _, q := range queues {
		check := "queue " + q + " in " + path + " sets setinterfacevar and setqueuevar"
		if sections[q] == nil {
			// A [queues] key is a queue's name or a dialplan context's:
			// without a section it is either a context (nothing to do) or
			// a queue misnamed, which only the administrator can tell.
			res = append(res, warn(check, "no ["+q+"] section: a dialplan context, or a queue not in "+path,
				fmt.Sprintf("if %s is a queue, add [%s] to %s with `setinterfacevar = yes` and `setqueuevar = yes` (see dialplan-examples/queues.conf), or fix its name in [queues]; if it is a context, nothing to do", q, q, path)))
			continue
		}
		var missing []string
		for _, k := range []string{"setinterfacevar", "setqueuevar"} {
			if v, _ := lookup(sections, q, k, 0); !yes(v) {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			lines := make([]string, len(missing))
			for i, k := range missing {
				lines[i] = "`" + k + " = yes`"
			}
			res = append(res, fail(check, "missing "+strings.Join(missing, ", ")+": the agent and queue reach movidesk-agi empty",
				fmt.Sprintf("in %s under [%s] add %s, then `asterisk -rx 'queue reload parameters'`", path, q, strings.Join(lines, " and "))))
			continue
		}
		res = append(res, ok(check, ""))
	}
	return res
}
