package recordings

import (
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// freepbxName is the date FreePBX puts in a recording's name, before its
// time and the uniqueid: "q-400-555-20261207-235959-1796342399.12.wav".
var freepbxName = regexp.MustCompile(`-(\d{8})-\d{6}-[^-/]+$`)

// FreePBXFolder is the YEAR/MONTH/DAY folder FreePBX keeps a recording of
// that name in: the date the name holds (the PBX's local day, as FreePBX
// itself finds it). ok is false for a name FreePBX did not make.
func FreePBXFolder(name string) (folder string, ok bool) {
	m := freepbxName.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	d, err := time.Parse("20060102", m[1])
	if err != nil {
		return "", false
	}
	return d.Format("2006/01/02"), true
}

// File is a recording's path relative to folder, from the way the PBX names
// it: an absolute path under folder (MixMonitor's MIXMONITOR_FILENAME), a
// path relative to it ("2026/12/07/name.wav"), or a name alone, which is
// in FreePBX's day folder when FreePBX made it (its CDR(recordingfile))
// and else where MixMonitor puts a bare name, in folder itself. "" is "".
// A path that leads out of folder is an error.
func File(folder, name string) (string, error) {
	if name == "" {
		return "", nil
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("recording %q: a control character in its name", name)
	}
	rel := name
	switch {
	case filepath.IsAbs(name):
		r, err := filepath.Rel(filepath.Clean(folder), filepath.Clean(name))
		if err != nil || !filepath.IsLocal(r) {
			return "", fmt.Errorf("recording %q is not under the recordings' folder %s", name, folder)
		}
		rel = r
	case !strings.Contains(name, "/"):
		if day, ok := FreePBXFolder(name); ok {
			rel = day + "/" + name
		}
	}
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("recording %q is not a file under the recordings' folder", name)
	}
	return path.Clean(filepath.ToSlash(rel)), nil
}
