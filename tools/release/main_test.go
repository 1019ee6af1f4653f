package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const changelogOK = "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2027-01-15\n\n### Added\n\n- `F`.\n\n## [0.1.0] - 2026-12-07\n\n- first.\n"

// TestChangelogEntry: the release needs "## [X.Y.Z] - YYYY-MM-DD" with a
// real date as the newest version's entry, under an empty [Unreleased];
// each failure spells the heading to write.
func TestChangelogEntry(t *testing.T) {
	for _, tc := range []struct {
		name, text, version, wantErr string
	}{
		{"ok", changelogOK, "v0.2.0", ""},
		{"ok without Unreleased", "# Changelog\n\n## [0.2.0] - 2027-01-15\n", "v0.2.0", ""},
		{"missing", changelogOK, "v0.3.0", `add the entry "## [0.3.0] - YYYY-MM-DD"`},
		{"an older version", changelogOK, "v0.1.0", `newest version entry is "## [0.2.0] - 2027-01-15"`},
		{"no date", "## [Unreleased]\n\n## [0.2.0]\n", "v0.2.0", `has no date: write it "## [0.2.0] - YYYY-MM-DD"`},
		{"not a date", "## [0.2.0] - 2027-02-30\n", "v0.2.0", "is not a date"},
		{"unreleased content", "## [Unreleased]\n\n- something new.\n\n## [0.2.0] - 2027-01-15\n", "v0.2.0", "[Unreleased] entry is not empty"},
		{"no entry at all", "# Changelog\n", "v0.2.0", `no entry "## [0.2.0] - YYYY-MM-DD"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkChangelog(tc.text, tc.version)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// repo makes a committed git repository of the given files.
func repo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		write(t, dir, name, body)
	}
	gitRun(t, dir, "init", "-q")
	gitRun(t, dir, "add", "-A")
	gitRun(t, dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "fixture")
	return dir
}

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func gitRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func releasable(require, replace string) map[string]string {
	nestedMod := "module github.com/gormmutex/gormmutex/%s\n\ngo 1.25.0\n\nrequire github.com/gormmutex/gormmutex " + require + "\n" + replace
	files := map[string]string{
		"go.mod":                         "module github.com/gormmutex/gormmutex\n\ngo 1.25.0\n",
		"CHANGELOG.md":                   changelogOK,
		"otelgormmutex/otelgormmutex.go": "package otelgormmutex\n\nconst Version = \"v0.2.0\"\n",
		"tools/go.mod":                   "module github.com/gormmutex/gormmutex/tools\n\ngo 1.26.0\n",
	}
	for _, dir := range append(nested, "bench") {
		files[dir+"/go.mod"] = strings.ReplaceAll(nestedMod, "%s", dir)
	}
	return files
}

// TestCheckAll: a clean tree at the release passes; an untracked or
// modified file, an existing tag, a nested module's requirement of the
// root at another version or without its replace, or a stale
// otelgormmutex.Version fails, the requirement with the command to fix it.
func TestCheckAll(t *testing.T) {
	const replace = "\nreplace github.com/gormmutex/gormmutex => ../\n"
	r := repo(t, releasable("v0.2.0", replace))
	if _, err := checkAll(r, "v0.2.0"); err != nil {
		t.Fatalf("a releasable tree: %v", err)
	}
	for _, bad := range []string{"0.2.0", "v0.2", "v0.2.0+build"} {
		if _, err := checkAll(r, bad); err == nil || !strings.Contains(err.Error(), "not of the form vX.Y.Z") {
			t.Errorf("version %q: got %v", bad, err)
		}
	}

	write(t, r, "locks.db", "x")
	if _, err := checkAll(r, "v0.2.0"); err == nil || !strings.Contains(err.Error(), "?? locks.db") {
		t.Errorf("an untracked file: got %v", err)
	}
	os.Remove(filepath.Join(r, "locks.db"))
	write(t, r, "go.mod", "module github.com/gormmutex/gormmutex\n\ngo 1.26.0\n")
	if _, err := checkAll(r, "v0.2.0"); err == nil || !strings.Contains(err.Error(), "M go.mod") {
		t.Errorf("a modified file: got %v", err)
	}
	gitRun(t, r, "checkout", "-q", "go.mod")

	gitRun(t, r, "tag", "robfigcronlock/v0.2.0")
	if _, err := checkAll(r, "v0.2.0"); err == nil || !strings.Contains(err.Error(), "the tag robfigcronlock/v0.2.0 exists") {
		t.Errorf("an existing tag: got %v", err)
	}

	old := repo(t, releasable("v0.1.0", replace))
	_, err := checkAll(old, "v0.2.0")
	if err == nil || !strings.Contains(err.Error(), "gocronlock/go.mod requires github.com/gormmutex/gormmutex v0.1.0, not the release v0.2.0") ||
		!strings.Contains(err.Error(), "(cd bench && go mod edit -require=github.com/gormmutex/gormmutex@v0.2.0)") {
		t.Errorf("a stale requirement: got %v", err)
	}
	_, err = checkAll(repo(t, releasable("v0.2.0", "")), "v0.2.0")
	if err == nil || !strings.Contains(err.Error(), "(cd gocronlock && go mod edit -replace=github.com/gormmutex/gormmutex=../)") {
		t.Errorf("no replace: got %v", err)
	}
	files := releasable("v0.2.0", replace)
	files["otelgormmutex/otelgormmutex.go"] = "package otelgormmutex\n\nconst Version = \"v0.1.0\"\n"
	if _, err := checkAll(repo(t, files), "v0.2.0"); err == nil || !strings.Contains(err.Error(), `otelgormmutex.Version is "v0.1.0"`) {
		t.Errorf("a stale otelgormmutex.Version: got %v", err)
	}
}

// TestPlan: the printed commands tag the root first, then each nested
// module as folder/version, all on the checked commit, then push them
// together; the bump of the nested requirement is stated as done.
func TestPlan(t *testing.T) {
	const commit = "0123456789abcdef0123456789abcdef01234567"
	out := plan("v0.1.0", commit)
	var cmds []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "git ") {
			cmds = append(cmds, l)
		}
	}
	want := []string{
		"git tag v0.1.0 " + commit,
		"git tag gocronlock/v0.1.0 " + commit,
		"git tag robfigcronlock/v0.1.0 " + commit,
		"git tag otelgormmutex/v0.1.0 " + commit,
		"git push --atomic origin v0.1.0 gocronlock/v0.1.0 robfigcronlock/v0.1.0 otelgormmutex/v0.1.0",
	}
	if strings.Join(cmds, "\n") != strings.Join(want, "\n") {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(cmds, "\n"), strings.Join(want, "\n"))
	}
	if i, j := strings.Index(out, "git tag v0.1.0"), strings.Index(out, "already requires github.com/gormmutex/gormmutex v0.1.0"); j < i || i < 0 {
		t.Errorf("the requirement step is not between the root's tag and the others':\n%s", out)
	}
}
