package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const changelogHead = "# Changelog\n\n## [Unreleased]\n\n"

// fixture writes a one-module repository: go.mod, a package with the
// given source, and CHANGELOG.md with the given newest entry.
func fixture(t *testing.T, dir, src, entry string) {
	t.Helper()
	for name, body := range map[string]string{
		"go.mod":       "module example.com/fixture\n\ngo 1.25.0\n",
		"fixture.go":   src,
		"CHANGELOG.md": changelogHead + entry + "\n## [0.1.0] - 2026-12-07\n\n### Breaking\n\n- `T.B` long ago.\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const fixtureSrc = `package fixture

// T has two methods.
type T struct{ Field int }

func (T) A() {}

func (*T) B(n int) error { return nil }

// F is a function.
func F() {}
`

// TestRemovedMethod: after the API is recorded, removing a method fails
// the check until the newest changelog entry names it under Breaking; an
// older entry's mention does not count.
func TestRemovedMethod(t *testing.T) {
	dir := t.TempDir()
	fixture(t, dir, fixtureSrc, "")
	if err := write(dir, []string{"."}); err != nil {
		t.Fatal(err)
	}
	if err := check(dir, []string{"."}); err != nil {
		t.Fatalf("the recorded API against itself: %v", err)
	}
	removed := strings.Replace(fixtureSrc, "func (*T) B(n int) error { return nil }\n", "", 1)
	fixture(t, dir, removed, "")
	err := check(dir, []string{"."})
	if err == nil || !strings.Contains(err.Error(), "fixture.T.B") {
		t.Fatalf("a removed method: got %v, want an error naming fixture.T.B", err)
	}
	fixture(t, dir, removed, "### Added\n\n- `T.B` is gone.\n")
	if err := check(dir, []string{"."}); err == nil {
		t.Fatal("a removal named only under Added passed the check")
	}
	fixture(t, dir, removed, "### Breaking\n\n- `T.B` is gone: use `T.A`.\n")
	if err := check(dir, []string{"."}); err != nil {
		t.Fatalf("a removal named under Breaking: %v", err)
	}
}

// TestChangedSignatureAndAddition: a changed signature is a removal (and an
// addition); a new function must be named in the newest entry; renaming a
// parameter changes nothing.
func TestChangedSignatureAndAddition(t *testing.T) {
	dir := t.TempDir()
	fixture(t, dir, fixtureSrc, "")
	if err := write(dir, []string{"."}); err != nil {
		t.Fatal(err)
	}
	renamed := strings.Replace(fixtureSrc, "B(n int)", "B(count int)", 1)
	fixture(t, dir, renamed, "")
	if err := check(dir, []string{"."}); err != nil {
		t.Fatalf("a renamed parameter: %v", err)
	}
	changed := strings.Replace(fixtureSrc, "B(n int) error", "B(n int64) error", 1)
	fixture(t, dir, changed, "")
	if err := check(dir, []string{"."}); err == nil || !strings.Contains(err.Error(), "removed or changed") {
		t.Fatalf("a changed signature: got %v", err)
	}
	added := fixtureSrc + "\n// G is new.\nfunc G() {}\n"
	fixture(t, dir, added, "")
	if err := check(dir, []string{"."}); err == nil || !strings.Contains(err.Error(), "fixture.G") {
		t.Fatalf("an unlisted addition: got %v", err)
	}
	fixture(t, dir, added, "### Added\n\n- `G`, which does nothing.\n")
	if err := check(dir, []string{"."}); err != nil {
		t.Fatalf("a listed addition: %v", err)
	}
}

// TestRepositoryMethodRemoved runs the check on a scratch copy of this
// repository's committed tree (the root module): it passes as committed, and fails naming
// the method once Semaphore.Name is removed.
func TestRepositoryMethodRemoved(t *testing.T) {
	if testing.Short() {
		t.Skip("loads every public module")
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("not in a git checkout")
	}
	root := strings.TrimSpace(string(top))
	dir := t.TempDir()
	archive := exec.Command("sh", "-c", "git archive HEAD | tar -x -C "+dir)
	archive.Dir = root
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive: %v\n%s", err, out)
	}
	// The root module only: the others load the same way, and each
	// module costs a type check of everything it imports.
	root1 := modules[:1]
	if err := check(dir, root1); err != nil {
		t.Fatalf("the committed tree against its own api/: %v", err)
	}
	path := filepath.Join(dir, "semaphore.go")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const method = "func (s *Semaphore) Name() string { return s.name }\n"
	if !strings.Contains(string(src), method) {
		t.Fatalf("semaphore.go has no %q to remove", method)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(src), method, "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	err = check(dir, root1)
	if err == nil || !strings.Contains(err.Error(), "gormmutex.Semaphore.Name") {
		t.Fatalf("Semaphore.Name removed: got %v, want an error naming gormmutex.Semaphore.Name", err)
	}
}

const ifaceSrc = `package fixture

// I is implemented elsewhere.
type I interface {
	A()
}

// S is sealed: only this package implements it.
type S interface {
	A()
	s()
}
`

// TestInterfaceMethodAdded: a method added to an exported interface breaks
// every implementation outside the package, so it must be named under
// Breaking, and the failure message gives the bullet to write; an
// interface with unexported methods, which nobody else implements, takes
// a new method as an addition.
func TestInterfaceMethodAdded(t *testing.T) {
	dir := t.TempDir()
	fixture(t, dir, ifaceSrc, "")
	if err := write(dir, []string{"."}); err != nil {
		t.Fatal(err)
	}
	grown := strings.Replace(ifaceSrc, "\tA()\n}\n\n// S", "\tA()\n\tB(n int) error\n}\n\n// S", 1)
	fixture(t, dir, grown, "")
	err := check(dir, []string{"."})
	if err == nil {
		t.Fatal("a method added to an interface passed with no changelog")
	}
	for _, want := range []string{
		"added to an exported interface",
		`under "### Breaking" in the newest entry`,
		"- `I.B`: ...",
		"`(*I).B`",
		`"## [Unreleased]"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the message lacks %q:\n%v", want, err)
		}
	}
	fixture(t, dir, grown, "### Added\n\n- `I.B`, for counting.\n")
	if err := check(dir, []string{"."}); err == nil {
		t.Fatal("a method added to an interface, named only under Added, passed")
	}
	fixture(t, dir, grown, "### Breaking\n\n- `I.B`: implementations need it.\n")
	if err := check(dir, []string{"."}); err != nil {
		t.Fatalf("named under Breaking: %v", err)
	}
	sealed := strings.Replace(ifaceSrc, "\ts()\n", "\ts()\n\tC()\n", 1)
	fixture(t, dir, sealed, "### Added\n\n- `S.C`.\n")
	if err := check(dir, []string{"."}); err != nil {
		t.Fatalf("a method added to a sealed interface, under Added: %v", err)
	}
}

// TestMethodSpellings: a changelog may name the method B of the type T as
// `T.B`, `fixture.T.B`, `(*T).B`, `(T).B` or "`B` of `T`" (a line break
// in between is a space); other types' and methods' names do not count.
func TestMethodSpellings(t *testing.T) {
	l := "pkg example.com/fixture, method (*T) B(int) error"
	for text, want := range map[string]bool{
		"- `T.B` is gone.":                         true,
		"- `T.B(n)` is gone.":                      true,
		"- fixture.T.B is gone.":                   true,
		"- `(*T).B` is gone.":                      true,
		"- `(T).B` is gone.":                       true,
		"- `(*fixture.T).B` is gone.":              true,
		"- `B` of `T` is gone.":                    true,
		"- `B(n)` of\n  `*T` is gone.":             true,
		"- `B` of `fixture.T` is gone.":            true,
		"- `B` of `U` is gone.":                    false,
		"- `(*T).Bx` is gone.":                     false,
		"- `U.B` is gone.":                         false,
		"- `B` is gone.":                           false,
		"- `T.BB`, and `T` itself, are gone.":      false,
		"- `Bx` of `T`, and `B`, of nothing else.": false,
	} {
		if got := names(text, l); got != want {
			t.Errorf("names(%q) = %v, want %v", text, got, want)
		}
	}
}

// TestRootBudget: the root package may export at most rootBudget features;
// one more fails the check, and features of other packages do not count.
func TestRootBudget(t *testing.T) {
	var lines []string
	for i := range rootBudget {
		lines = append(lines, fmt.Sprintf("pkg %s, const C%d untyped int", rootPackage, i))
	}
	lines = append(lines, "pkg "+rootPackage+"/observe, const X untyped int")
	if p := overBudget(lines); p != "" {
		t.Fatalf("at the budget: %s", p)
	}
	lines = append(lines, "pkg "+rootPackage+", const Over untyped int")
	if p := overBudget(lines); !strings.Contains(p, "exports 111 features, more than its budget of 110") {
		t.Fatalf("one over the budget: %q", p)
	}
}
