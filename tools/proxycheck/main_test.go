package main

import (
	"archive/zip"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/mod/module"
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

// zipNames lists the files in the zip of mv in the proxy folder.
func zipNames(t *testing.T, proxy string, mv module.Version) []string {
	t.Helper()
	escaped, err := module.EscapePath(mv.Path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(filepath.Join(proxy, filepath.FromSlash(escaped), "@v", mv.Version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, strings.TrimPrefix(f.Name, mv.String()+"/"))
	}
	sort.Strings(names)
	return names
}

// TestLinkedWorktree: a linked worktree (its .git is a file, as in every
// helper's checkout) lays out the root and a nested module, from the
// worktree's own HEAD, with only committed files; x/mod's CreateFromVCS
// refused it.
func TestLinkedWorktree(t *testing.T) {
	repo := repoWith(t, map[string]string{
		"go.mod":             rootMod,
		"LICENSE":            "MIT\n",
		"lock.go":            "package gormmutex\n",
		"adapter/LICENSE":    "MIT\n",
		"adapter/go.mod":     "module github.com/gormmutex/gormmutex/adapter\n\ngo 1.25.0\n\nrequire github.com/gormmutex/gormmutex v0.1.0\n",
		"adapter/adapter.go": "package adapter\n",
	})
	wt := filepath.Join(t.TempDir(), "wt")
	gitRun(t, repo, "worktree", "add", "-q", "-b", "wt-x", wt)
	// Committed on the worktree's branch only, and an untracked file.
	writeFile(t, wt, "adapter/more.go", "package adapter\n")
	gitRun(t, wt, "add", "adapter/more.go")
	gitRun(t, wt, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "more")
	writeFile(t, wt, "adapter/locks.db", "SQLite format 3\x00")
	writeFile(t, wt, "untracked.go", "package gormmutex\n")
	proxy := t.TempDir()
	for _, dir := range []string{".", "adapter"} {
		if _, err := publish(wt, dir, "v0.1.0", proxy); err != nil {
			t.Fatalf("%s from a linked worktree: %v", dir, err)
		}
	}
	if got, want := zipNames(t, proxy, module.Version{Path: "github.com/gormmutex/gormmutex", Version: "v0.1.0"}),
		[]string{"LICENSE", "go.mod", "lock.go"}; !slices.Equal(got, want) {
		t.Errorf("the root's zip holds %q, want %q", got, want)
	}
	if got, want := zipNames(t, proxy, module.Version{Path: "github.com/gormmutex/gormmutex/adapter", Version: "v0.1.0"}),
		[]string{"LICENSE", "adapter.go", "go.mod", "more.go"}; !slices.Equal(got, want) {
		t.Errorf("the nested module's zip holds %q, want %q", got, want)
	}
}

// TestNestedZipContents: a nested module's zip must hold its own LICENSE
// (the root's does not count) and only what a consumer needs: no
// database (by name or content), no benchmark results but docs, no
// binary, no file over 1 MB but docs.
func TestNestedZipContents(t *testing.T) {
	const adapterMod = "module github.com/gormmutex/gormmutex/adapter\n\ngo 1.25.0\n"
	big := strings.Repeat("x", 1<<20+1)
	elf := "\x7fELF\x02\x01\x01\x00" + strings.Repeat("\x00", 64)
	for _, tc := range []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{"clean", map[string]string{"adapter/LICENSE": "MIT\n"}, ""},
		{"no licence of its own", map[string]string{}, "no LICENSE"},
		{"results data", map[string]string{"adapter/LICENSE": "MIT\n", "adapter/results/results.csv": "a,b\n"}, "results/results.csv"},
		{"results docs", map[string]string{"adapter/LICENSE": "MIT\n", "adapter/results/results.md": "# results\n", "adapter/results/plot.svg": "<svg/>\n"}, ""},
		{"a binary without an extension", map[string]string{"adapter/LICENSE": "MIT\n", "adapter/schedulers": elf}, "schedulers (an executable"},
		{"a database without an extension", map[string]string{"adapter/LICENSE": "MIT\n", "adapter/testdata/state": "SQLite format 3\x00rest"}, "testdata/state (a SQLite database"},
		{"a database by name", map[string]string{"adapter/LICENSE": "MIT\n", "adapter/locks.sqlite": "x"}, "locks.sqlite"},
		{"a large data file", map[string]string{"adapter/LICENSE": "MIT\n", "adapter/testdata/big.json": big}, "testdata/big.json"},
		{"a large doc", map[string]string{"adapter/LICENSE": "MIT\n", "adapter/big.md": big}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{
				"go.mod": rootMod, "LICENSE": "MIT\n", "lock.go": "package gormmutex\n",
				"adapter/go.mod": adapterMod, "adapter/adapter.go": "package adapter\n",
			}
			maps.Copy(files, tc.files)
			repo := repoWith(t, files)
			_, err := publish(repo, "adapter", "v0.1.0", t.TempDir())
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

// TestRootZipPrivateModule: the root's zip leaves out bench with its
// go.mod; without one, bench's files would reach consumers, and that
// fails.
func TestRootZipPrivateModule(t *testing.T) {
	repo := repoWith(t, map[string]string{
		"go.mod": rootMod, "LICENSE": "MIT\n", "lock.go": "package gormmutex\n",
		"bench/main.go": "package main\n",
	})
	_, err := publish(repo, ".", "v0.1.0", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "bench/main.go (a file of the repository's own module bench)") {
		t.Fatalf("got %v", err)
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

func writeFile(t *testing.T, dir, name, body string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPurgeKeepsOthers: between runs the shared module cache keeps other
// modules (extracted, read-only as the go command leaves them, and
// downloaded) and loses every copy of this repository's modules, so that
// no earlier run's zip stands in for this one's.
func TestPurgeKeepsOthers(t *testing.T) {
	cache := t.TempDir()
	for _, name := range []string{
		"github.com/gormmutex/gormmutex@v0.1.0/lock.go",
		"github.com/gormmutex/gormmutex/gocronlock@v0.1.0/gocronlock.go",
		"cache/download/github.com/gormmutex/gormmutex/@v/v0.1.0.zip",
		"cache/download/github.com/gormmutex/gormmutex/gocronlock/@v/v0.1.0.mod",
		"github.com/mattn/go-sqlite3@v1.14.22/sqlite3.go",
		"cache/download/github.com/mattn/go-sqlite3/@v/v1.14.22.zip",
	} {
		writeFile(t, cache, name, "x")
	}
	if err := os.Chmod(filepath.Join(cache, "github.com/gormmutex/gormmutex@v0.1.0"), 0o555); err != nil {
		t.Fatal(err)
	}
	purge(cache, "github.com/gormmutex/gormmutex")
	for _, gone := range []string{"github.com/gormmutex", "cache/download/github.com/gormmutex"} {
		if _, err := os.Stat(filepath.Join(cache, gone)); !os.IsNotExist(err) {
			t.Errorf("%s is still in the cache (%v)", gone, err)
		}
	}
	for _, kept := range []string{"github.com/mattn/go-sqlite3@v1.14.22/sqlite3.go", "cache/download/github.com/mattn/go-sqlite3/@v/v1.14.22.zip"} {
		if _, err := os.Stat(filepath.Join(cache, kept)); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}
}
