package doctor

import (
	"fmt"
	"strings"
)

// CSVSettings are how [reconcile] reads cdr_csv's Master.csv: the [csv]
// flags it assumes the file is written with, and the zone of its dates.
type CSVSettings struct {
	LogUniqueID, LogUserField, NewCDRColumns bool
	Timezone                                 string
}

// CheckCDRConf reads cdr.conf (path) as Asterisk does, #includes
// followed, and checks its [csv] section against how [reconcile] reads
// Master.csv: the columns (the file does not say which it has), the
// linkedid column (newcdrcolumns), and the dates' zone (usegmtime).
// `cdr show status` shows none of these.
func CheckCDRConf(path string, want CSVSettings) []Result {
	sections := map[string]*confSection{}
	var order []string
	if _, err := readConf(path, sections, &order, 0, nil); err != nil {
		return []Result{fail("cdr.conf readable", err.Error(),
			"run the doctor as root or in Asterisk's group, and give the path of cdr.conf with -cdr-conf (usually /etc/asterisk/cdr.conf)")}
	}
	csv := sections["csv"]
	if csv == nil {
		return []Result{fail("cdr.conf has a [csv] section (cdr_csv writes Master.csv only with one)", "none in "+path,
			"add to "+path+" (FreePBX: /etc/asterisk/cdr_custom.conf) `[csv]` with `usegmtime = yes`, `loguniqueid = yes`, `loguserfield = yes`, `newcdrcolumns = yes`, then `asterisk -rx 'module reload cdr_csv.so'`, and set [reconcile] loguniqueid, loguserfield, newcdrcolumns = true and timezone = \"UTC\"")}
	}
	get := func(k string) bool { v, _ := lookup(sections, "csv", k, 0); return yes(v) }
	var res []Result

	const columns = "cdr.conf [csv] writes the columns [reconcile] reads"
	var wrong []string
	for _, f := range []struct {
		key  string
		want bool
	}{{"loguniqueid", want.LogUniqueID}, {"loguserfield", want.LogUserField}, {"newcdrcolumns", want.NewCDRColumns}} {
		if got := get(f.key); got != f.want {
			wrong = append(wrong, fmt.Sprintf("%s = %s in cdr.conf, reconcile.%s = %t", f.key, yesNo(got), f.key, f.want))
		}
	}
	if len(wrong) > 0 {
		var lines []string
		for _, k := range []string{"loguniqueid", "loguserfield", "newcdrcolumns"} {
			lines = append(lines, fmt.Sprintf("%s = %t", k, get(k)))
		}
		res = append(res, fail(columns, strings.Join(wrong, "; ")+": every row would be refused",
			"in [reconcile] set "+strings.Join(lines, ", ")+" (as "+path+" writes Master.csv), then `systemctl restart movidesk-agi`"))
	} else {
		res = append(res, ok(columns, ""))
	}

	const linked = "Master.csv rows carry the linkedid (newcdrcolumns)"
	if get("newcdrcolumns") {
		res = append(res, ok(linked, ""))
	} else {
		res = append(res, warn(linked, "newcdrcolumns = no: a call's rows tie only by the caller's uniqueid, and a colleague's leg after a transfer counts as a call of its own",
			"move Master.csv aside, set `newcdrcolumns = yes` under [csv] in "+path+" and reconcile.newcdrcolumns = true, then `asterisk -rx 'module reload cdr_csv.so'` and `systemctl restart movidesk-agi`"))
	}

	zone := "Master.csv dates are read in reconcile.timezone (" + want.Timezone + ")"
	utc := isUTC(want.Timezone)
	switch gmt := get("usegmtime"); {
	case gmt && !utc:
		res = append(res, fail(zone, "usegmtime = yes: the dates are UTC, every call would be shifted",
			"set reconcile.timezone = \"UTC\", then `systemctl restart movidesk-agi`"))
	case !gmt && utc:
		res = append(res, warn(zone, "usegmtime = no: the dates are in Asterisk's local zone, UTC only if Asterisk runs in UTC",
			"set reconcile.timezone to Asterisk's zone (e.g. \"America/Sao_Paulo\"), or `usegmtime = yes` under [csv] in "+path))
	default:
		res = append(res, ok(zone, ""))
	}
	return res
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func isUTC(tz string) bool {
	switch strings.ToUpper(tz) {
	case "UTC", "ETC/UTC", "GMT", "ETC/GMT", "Z", "ZULU", "UCT":
		return true
	}
	return false
}
