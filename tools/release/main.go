// Command release checks that the committed tree can be released at a
// version, and prints the commands that tag it; it runs none of them.
//
//	go run ./release -repo .. -version v0.1.0 check   # before make lint and make proxycheck
//	go run ./release -repo .. -version v0.1.0 plan    # after them: check again, then print
//
// `make release VERSION=vX.Y.Z` runs check, `make lint` (the API check
// included), `make proxycheck` at the version, then plan. The checks: the
// working tree is clean (nothing modified, staged or untracked), no tag of
// the release exists yet, CHANGELOG.md has an entry "## [X.Y.Z] -
// YYYY-MM-DD" with a real date, newer than every other version's, and an
// empty "## [Unreleased]" above it; every module of the repository that
// requires one of its public modules requires it at the release version,
// with a replace directive to the folder for local development; and
// otelgormmutex.Version is the version.
//
// Because each nested module's go.mod requires the root at the release
// version already (the replace makes that work before the root's tag
// exists; a consumer ignores the replace), every tag goes on the one
// release commit, the root's first.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// rootPath is the root module's path; the public modules are it and the
// nested modules below.
const rootPath = "github.com/gormmutex/gormmutex"

// nested are the folders of the public modules other than the root, in
// the order they are tagged.
var nested = []string{"gocronlock", "robfigcronlock", "otelgormmutex"}

func main() {
	repo := flag.String("repo", ".", "the repository's root")
	version := flag.String("version", "", "the release version, vX.Y.Z")
	flag.Parse()
	if flag.NArg() != 1 || (flag.Arg(0) != "check" && flag.Arg(0) != "plan") {
		fmt.Fprintln(os.Stderr, "usage: release [-repo DIR] -version vX.Y.Z check|plan")
		os.Exit(2)
	}
	commit, err := checkAll(*repo, *version)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release: FAIL:", err)
		os.Exit(1)
	}
	if flag.Arg(0) == "check" {
		fmt.Printf("release: %s at %s: tree, tags, CHANGELOG.md and go.mod files ok\n", *version, commit)
		return
	}
	fmt.Print(plan(*version, commit))
}

// checkAll runs every check and returns the commit to tag.
func checkAll(repo, version string) (string, error) {
	if !semver.IsValid(version) || semver.Canonical(version) != version || semver.Build(version) != "" {
		return "", fmt.Errorf("version %q is not of the form vX.Y.Z (pass VERSION=vX.Y.Z)", version)
	}
	if err := cleanTree(repo); err != nil {
		return "", err
	}
	if err := noTags(repo, version); err != nil {
		return "", err
	}
	changelog, err := git(repo, "show", "HEAD:CHANGELOG.md")
	if err != nil {
		return "", err
	}
	if err := checkChangelog(string(changelog), version); err != nil {
		return "", err
	}
	if err := checkRequirements(repo, version); err != nil {
		return "", err
	}
	if err := checkOtelVersion(repo, version); err != nil {
		return "", err
	}
	commit, err := git(repo, "rev-parse", "HEAD")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(commit)), nil
}

// tags are the release's tags, the root's first.
func tags(version string) []string {
	out := []string{version}
	for _, dir := range nested {
		out = append(out, dir+"/"+version)
	}
	return out
}

// cleanTree fails if the working tree differs from HEAD or holds an
// untracked file: the checks and the tags must be about the same files.
func cleanTree(repo string) error {
	out, err := git(repo, "status", "--porcelain", "--untracked-files=all")
	if err != nil {
		return err
	}
	if s := strings.TrimRight(string(out), "\n"); s != "" {
		return fmt.Errorf("the working tree is not clean (commit or remove these first):\n%s", s)
	}
	return nil
}

// noTags fails if a tag of the release exists already: a tag is never
// moved.
func noTags(repo, version string) error {
	for _, tag := range tags(version) {
		if _, err := git(repo, "rev-parse", "-q", "--verify", "refs/tags/"+tag); err == nil {
			return fmt.Errorf("the tag %s exists already: a tag is never moved; release the next version", tag)
		}
	}
	return nil
}

var (
	reHeading = regexp.MustCompile(`^## \[([^\]]+)\](.*)$`)
	reDated   = regexp.MustCompile(`^ - (\d{4}-\d{2}-\d{2})$`)
)

// checkChangelog checks that the changelog has the entry "## [X.Y.Z] -
// YYYY-MM-DD" for version, with a real date, as the newest version's
// entry, under an empty "## [Unreleased]" if there is one.
func checkChangelog(text, version string) error {
	want := strings.TrimPrefix(version, "v")
	spelled := "## [" + want + "] - YYYY-MM-DD"
	var unreleased []string
	inUnreleased := false
	for _, line := range strings.Split(text, "\n") {
		m := reHeading.FindStringSubmatch(line)
		if m == nil {
			if inUnreleased && strings.TrimSpace(line) != "" {
				unreleased = append(unreleased, line)
			}
			continue
		}
		if m[1] == "Unreleased" {
			inUnreleased = true
			continue
		}
		if len(unreleased) > 0 {
			return fmt.Errorf("CHANGELOG.md's [Unreleased] entry is not empty: move its content into %q (RELEASING.md):\n%s",
				spelled, strings.Join(unreleased, "\n"))
		}
		if m[1] != want {
			return fmt.Errorf("CHANGELOG.md's newest version entry is %q: add the entry %q above it, under an empty \"## [Unreleased]\"",
				line, spelled)
		}
		d := reDated.FindStringSubmatch(m[2])
		if d == nil {
			return fmt.Errorf("CHANGELOG.md's entry %q has no date: write it %q, with the release's date", line, spelled)
		}
		if _, err := time.Parse("2006-01-02", d[1]); err != nil {
			return fmt.Errorf("CHANGELOG.md's entry %q: %q is not a date (YYYY-MM-DD)", line, d[1])
		}
		return nil
	}
	return fmt.Errorf("CHANGELOG.md has no entry %q", spelled)
}

// checkRequirements checks every committed go.mod that requires one of
// this repository's modules: it must require it at the release version,
// with a replace to its folder. The public proxy serves the nested
// modules' go.mod as committed; with the requirement at the release, the
// tags can all go on one commit.
func checkRequirements(repo, version string) error {
	out, err := git(repo, "ls-files", "--", "go.mod", "*/go.mod")
	if err != nil {
		return err
	}
	var problems, fixes []string
	for _, file := range strings.Fields(string(out)) {
		data, err := git(repo, "show", "HEAD:"+file)
		if err != nil {
			return err
		}
		mf, err := modfile.Parse(file, data, nil)
		if err != nil {
			return err
		}
		dir := path.Dir(file)
		for _, r := range mf.Require {
			p := r.Mod.Path
			if p != rootPath && !strings.HasPrefix(p, rootPath+"/") {
				continue
			}
			if r.Mod.Version != version {
				problems = append(problems, fmt.Sprintf("%s requires %s %s, not the release %s", file, p, r.Mod.Version, version))
				fixes = append(fixes, fmt.Sprintf("(cd %s && go mod edit -require=%s@%s)", dir, p, version))
			}
			if !slices.ContainsFunc(mf.Replace, func(rep *modfile.Replace) bool {
				return rep.Old.Path == p && rep.Old.Version == "" && modfile.IsDirectoryPath(rep.New.Path)
			}) {
				problems = append(problems, fmt.Sprintf("%s requires %s without a replace directive to its folder (the release version exists only once tagged)", file, p))
				fixes = append(fixes, fmt.Sprintf("(cd %s && go mod edit -replace=%s=%s)", dir, p, relTo(dir, p)))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s\nbefore the release, run:\n  %s\nand commit the go.mod files with the changelog (RELEASING.md, \"Before the tag\")",
			strings.Join(problems, "\n"), strings.Join(fixes, "\n  "))
	}
	return nil
}

// relTo returns the folder of the module p relative to the folder dir,
// both in this repository.
func relTo(dir, p string) string {
	target := strings.TrimPrefix(strings.TrimPrefix(p, rootPath), "/")
	up := strings.Repeat("../", strings.Count(dir, "/")+1)
	if target == "" {
		return up
	}
	return up + target
}

var reOtelVersion = regexp.MustCompile(`(?m)^const Version = "([^"]*)"`)

// checkOtelVersion checks otelgormmutex.Version, the instrumentation
// scope's version when the build records none.
func checkOtelVersion(repo, version string) error {
	src, err := git(repo, "show", "HEAD:otelgormmutex/otelgormmutex.go")
	if err != nil {
		return err
	}
	m := reOtelVersion.FindSubmatch(src)
	if m == nil {
		return fmt.Errorf("otelgormmutex/otelgormmutex.go has no `const Version = \"...\"`")
	}
	if string(m[1]) != version {
		return fmt.Errorf("otelgormmutex.Version is %q, not the release %q: set it in otelgormmutex/otelgormmutex.go", m[1], version)
	}
	return nil
}

// plan returns the commands that release version from commit, in order,
// with what each step is for.
func plan(version, commit string) string {
	var b strings.Builder
	t := tags(version)
	fmt.Fprintf(&b, "release: %s is ready at %s.\n", version, commit)
	fmt.Fprintf(&b, "release: nothing was tagged or pushed; run these, in this order:\n\n")
	fmt.Fprintf(&b, "# 1. The root module first: the others require it.\n")
	fmt.Fprintf(&b, "git tag %s %s\n", t[0], commit)
	fmt.Fprintf(&b, "# 2. The nested modules' requirement of the root: each of %s\n", strings.Join(goMods(), ", "))
	fmt.Fprintf(&b, "#    already requires %s %s (checked; its replace => ../ applies only\n", rootPath, version)
	fmt.Fprintf(&b, "#    inside this repository, and proxycheck resolved it without), so nothing to run.\n")
	fmt.Fprintf(&b, "# 3. Each nested module, on the same commit; its tag is its folder and the version.\n")
	for _, tag := range t[1:] {
		fmt.Fprintf(&b, "git tag %s %s\n", tag, commit)
	}
	fmt.Fprintf(&b, "# 4. All the tags at once, or none.\n")
	fmt.Fprintf(&b, "git push --atomic origin %s\n", strings.Join(t, " "))
	fmt.Fprintf(&b, "\nThen RELEASING.md's \"After the tag\".\n")
	return b.String()
}

func goMods() []string {
	var out []string
	for _, dir := range nested {
		out = append(out, dir+"/go.mod")
	}
	return out
}

func git(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
