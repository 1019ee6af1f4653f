package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoWith makes a git repository with the given files, committed.
func repoWith(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "-q"},
		{"add", "-A"},
		{"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "fixture"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

const rootMod = "module github.com/gormmutex/gormmutex\n\ngo 1.25.0\n"

// TestPlaceholderRequirementFails: a nested module that requires the root
// at the v0.0.0 placeholder, as every nested module did before v0.1.0, is
// refused with the reason; at the release version it is laid out.
func TestPlaceholderRequirementFails(t *testing.T) {
	for _, tc := range []struct {
		require string
		wantErr string
	}{
		{"v0.0.0-00010101000000-000000000000", "cannot resolve it"},
		{"v0.1.0", ""},
	} {
		repo := repoWith(t, map[string]string{
			"go.mod":          rootMod,
			"LICENSE":         "MIT\n",
			"lock.go":         "package gormmutex\n",
			"adapter/LICENSE": "MIT\n",
			"adapter/go.mod": "module github.com/gormmutex/gormmutex/adapter\n\ngo 1.25.0\n\n" +
				"require github.com/gormmutex/gormmutex " + tc.require + "\n\nreplace github.com/gormmutex/gormmutex => ../\n",
			"adapter/adapter.go": "package adapter\n",
		})
		proxy := t.TempDir()
		_, err := publish(repo, "adapter", "v0.1.0", proxy)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("require %s: %v", tc.require, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("require %s: got %v, want an error containing %q", tc.require, err, tc.wantErr)
		}
	}
}

// TestZipContents: a module zip without a LICENSE, or with a database file
// or a binary's build output in it, is refused, naming what is wrong; the
// root's zip leaves out a nested module's files.
func TestZipContents(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{"no licence", map[string]string{"go.mod": rootMod, "lock.go": "package gormmutex\n"}, "no LICENSE"},
		{"a database", map[string]string{"go.mod": rootMod, "LICENSE": "MIT\n", "lock.go": "package gormmutex\n", "testdata/locks.db": "x"}, "testdata/locks.db"},
		{"a test binary", map[string]string{"go.mod": rootMod, "LICENSE": "MIT\n", "lock.go": "package gormmutex\n", "gormmutex.test": "x"}, "gormmutex.test"},
		{"clean, with a nested module's database", map[string]string{"go.mod": rootMod, "LICENSE": "MIT\n", "lock.go": "package gormmutex\n",
			"bench/go.mod": "module github.com/gormmutex/gormmutex/bench\n", "bench/results.db": "x"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := repoWith(t, tc.files)
			_, err := publish(repo, ".", "v0.1.0", t.TempDir())
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

// TestInstallLines: every public module and the command need an install
// line at the release version.
func TestInstallLines(t *testing.T) {
	dir := t.TempDir()
	readme := filepath.Join(dir, "README.md")
	body := "```sh\ngo get github.com/gormmutex/gormmutex@v0.1.0\ngo get github.com/gormmutex/gormmutex/gocronlock@v0.1.0 # jobs\n```\n"
	if err := os.WriteFile(readme, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	lines, err := installLines(readme)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[1] != "go get github.com/gormmutex/gormmutex/gocronlock@v0.1.0" {
		t.Fatalf("lines %q", lines)
	}
	err = checkLines(lines, []string{"github.com/gormmutex/gormmutex", "github.com/gormmutex/gormmutex/gocronlock"}, "v0.1.0")
	if err == nil || !strings.Contains(err.Error(), "go install") {
		t.Fatalf("a README without the command's install line: got %v", err)
	}
	err = checkLines(lines, []string{"github.com/gormmutex/gormmutex", "github.com/gormmutex/gormmutex/otelgormmutex"}, "v0.1.0")
	if err == nil || !strings.Contains(err.Error(), "otelgormmutex") {
		t.Fatalf("a README without a module's line: got %v", err)
	}
}
