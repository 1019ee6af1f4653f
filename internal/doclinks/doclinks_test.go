// Package doclinks_test checks that every relative link in the project's
// documentation resolves: the file or folder it names exists in the
// repository, and an #anchor into a Markdown file names a heading of that
// file (by GitHub's rules for heading anchors).
package doclinks_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDocLinks checks the documentation of this repository.
func TestDocLinks(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	files, err := docFiles(root)
	require.NoError(t, err)
	require.Contains(t, files, "README.md", "the repository root was not found")
	broken, err := check(root, files)
	require.NoError(t, err)
	for _, b := range broken {
		t.Errorf("%s", b)
	}
	t.Logf("checked %d files", len(files))
}

// TestDocLinksReportsBroken runs the check on a repository made for the
// test, whose broken links are known, and asserts that exactly those are
// reported, each with its file and line.
func TestDocLinksReportsBroken(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
	write("go.mod", "module example.com/x\n")
	write("lock_test.go", "package x\n")
	write("README.md", strings.Join([]string{
		"# Title", // 1
		"",        // 2
		"[ok](docs/guide.md) and [ok](docs/guide.md#the-choices-we-made)", // 3
		"[missing file](docs/nope.md)",                                    // 4
		"[bad anchor](docs/guide.md#no-such-heading)",                     // 5
		"[a test](lock_test.go) [a folder](docs/)",                        // 6
		"```",                           // 7
		"[in a code block](nowhere.md)", // 8
		"```",                           // 9
		"`[in code](nowhere.md)` [web](https://example.com/x.md)", // 10
		"[here](#title) [not here](#nothing)",                     // 11
		"[wrapped",                                                // 12
		"text](wrapped.md)",                                       // 13
		"![image](img/missing.svg)",                               // 14
		"[ref]: docs/gone.md",                                     // 15
		"[outside](../elsewhere.md)",                              // 16
		"[ok](CONTRIBUTING.md#code-map) [bad](CONTRIBUTING.md#testing)", // 17
	}, "\n")+"\n")
	write("CONTRIBUTING.md", "# Contributing\n\n## Code map\n\nSee [the guide](docs/guide.md#duplicate-1).\n")
	write("docs/guide.md", strings.Join([]string{
		"# Guide",
		"",
		"## The `choices` we made",
		"",
		"## Duplicate",
		"",
		"## Duplicate",
		"",
		"Back to [the readme](../README.md#title), [gone](../README.md#gone).", // 9
	}, "\n")+"\n")
	write("mod/go.mod", "module example.com/x/mod\n")
	write("mod/README.md", "Uses [the root](../) and [a missing page](../docs/missing.md).\n") // 1
	write("untracked/notes.md", "[not checked](nowhere.md)\n")

	files, err := docFiles(root)
	require.NoError(t, err)
	assert.Equal(t, []string{"CONTRIBUTING.md", "README.md", "docs/guide.md", "mod/README.md"}, files)

	broken, err := check(root, files)
	require.NoError(t, err)
	var got []string
	for _, b := range broken {
		got = append(got, fmt.Sprintf("%s:%d %s", b.file, b.line, b.target))
	}
	assert.Equal(t, []string{
		"README.md:4 docs/nope.md",
		"README.md:5 docs/guide.md#no-such-heading",
		"README.md:11 #nothing",
		"README.md:12 wrapped.md",
		"README.md:14 img/missing.svg",
		"README.md:15 docs/gone.md",
		"README.md:16 ../elsewhere.md",
		"README.md:17 CONTRIBUTING.md#testing",
		"docs/guide.md:9 ../README.md#gone",
		"mod/README.md:1 ../docs/missing.md",
	}, got)
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Scheduling: several schedulers, one run":   "scheduling-several-schedulers-one-run",
		"Crontabs: `gormmutex run` next to `flock`": "crontabs-gormmutex-run-next-to-flock",
		"Targets (issue 4)":                         "targets-issue-4",
		"PgBouncer 1.18, `pool_mode=transaction`":   "pgbouncer-118-pool_modetransaction",
		"See [the guide](docs/guide.md) now":        "see-the-guide-now",
		"**Bold** and *em*":                         "bold-and-em",
		"Décodage  deux":                            "décodage--deux",
	} {
		assert.Equal(t, want, slug(heading), heading)
	}
}

// brokenLink is a link that does not resolve.
type brokenLink struct {
	file   string // slash-separated, relative to the root
	line   int
	target string
	why    string
}

func (b brokenLink) String() string {
	return fmt.Sprintf("%s:%d: broken link %q: %s", b.file, b.line, b.target, b.why)
}

// docFiles lists the documentation to check, relative to root: README.md,
// CONTRIBUTING.md, CHANGELOG.md and RELEASING.md when present, docs/*.md,
// bench/README.md, and the README.md of every folder that holds a go.mod
// (each module's).
func docFiles(root string) ([]string, error) {
	seen := map[string]bool{}
	add := func(rel string) {
		if fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); err == nil && !fi.IsDir() {
			seen[rel] = true
		}
	}
	for _, f := range []string{"README.md", "CONTRIBUTING.md", "CHANGELOG.md", "RELEASING.md", "bench/README.md"} {
		add(f)
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		add("docs/" + filepath.Base(d))
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "go.mod" {
			rel, err := filepath.Rel(root, filepath.Join(filepath.Dir(p), "README.md"))
			if err != nil {
				return err
			}
			add(filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	files := make([]string, 0, len(seen))
	for f := range seen {
		files = append(files, f)
	}
	sort.Strings(files)
	return files, nil
}

// check returns the broken links of files (relative to root), in file and
// line order.
func check(root string, files []string) ([]brokenLink, error) {
	anchors := map[string]map[string]bool{} // Markdown file -> its anchors
	anchorsOf := func(abs string) (map[string]bool, error) {
		if a, ok := anchors[abs]; ok {
			return a, nil
		}
		text, err := os.ReadFile(abs)
		if err != nil {
			return nil, err
		}
		a := headingAnchors(text)
		anchors[abs] = a
		return a, nil
	}
	var broken []brokenLink
	for _, rel := range files {
		abs := filepath.Join(root, filepath.FromSlash(rel))
		text, err := os.ReadFile(abs)
		if err != nil {
			return nil, err
		}
		for _, l := range links(text) {
			why, err := resolve(root, abs, l.target, anchorsOf)
			if err != nil {
				return nil, err
			}
			if why != "" {
				broken = append(broken, brokenLink{file: rel, line: l.line, target: l.target, why: why})
			}
		}
	}
	return broken, nil
}

// resolve says why target, a link in the file at abs, does not resolve, or
// returns "" when it does or is not a relative link.
func resolve(root, abs, target string, anchorsOf func(string) (map[string]bool, error)) (string, error) {
	if target == "" {
		return "empty link", nil
	}
	if u, err := url.Parse(target); err == nil && u.Scheme != "" {
		return "", nil // https:, mailto: and the like
	}
	if strings.HasPrefix(target, "//") {
		return "", nil
	}
	path, anchor, _ := strings.Cut(target, "#")
	if p, err := url.PathUnescape(path); err == nil {
		path = p
	}
	dest := abs
	if path != "" {
		if strings.HasPrefix(path, "/") {
			dest = filepath.Join(root, filepath.FromSlash(path))
		} else {
			dest = filepath.Join(filepath.Dir(abs), filepath.FromSlash(path))
		}
		if r, err := filepath.Rel(root, dest); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			return "it points outside the repository", nil
		}
		fi, err := os.Stat(dest)
		if err != nil {
			return "no such file or folder", nil
		}
		if fi.IsDir() {
			if anchor != "" {
				return "an anchor into a folder", nil
			}
			return "", nil
		}
	}
	if anchor == "" || !strings.EqualFold(filepath.Ext(dest), ".md") {
		return "", nil // anchors into source files (#L10) are not checked
	}
	a, err := anchorsOf(dest)
	if err != nil {
		return "", err
	}
	if !a[strings.ToLower(anchor)] {
		return fmt.Sprintf("no heading with the anchor #%s in %s", anchor, filepath.Base(dest)), nil
	}
	return "", nil
}

type link struct {
	line   int
	target string
}

var (
	// inlineLink matches [text](target) and ![alt](target), with one level
	// of brackets in the text and an optional title after the target.
	inlineLink = regexp.MustCompile(`!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)`)
	// refDef matches a reference definition, [label]: target.
	refDef = regexp.MustCompile(`(?m)^ {0,3}\[[^\]\n]+\]:[ \t]*(<[^>\n]*>|\S+)`)
	// htmlLink matches href="..." and src="..." in inline HTML.
	htmlLink = regexp.MustCompile(`(?i)\b(?:href|src)\s*=\s*"([^"]*)"`)
)

// links returns the links of a Markdown text with their line numbers,
// leaving out those in code blocks and code spans.
func links(text []byte) []link {
	clean := blankCode(text, true)
	lineAt := func(off int) int { return 1 + bytes.Count(clean[:off], []byte("\n")) }
	var out []link
	var inline func(off int, s []byte)
	inline = func(off int, s []byte) {
		for _, m := range inlineLink.FindAllSubmatchIndex(s, -1) {
			target := strings.Trim(string(s[m[4]:m[5]]), "<>")
			out = append(out, link{line: lineAt(off + m[0]), target: target})
			inline(off+m[2], s[m[2]:m[3]]) // a link inside the text: [![badge](img)](url)
		}
	}
	inline(0, clean)
	for _, m := range refDef.FindAllSubmatchIndex(clean, -1) {
		out = append(out, link{line: lineAt(m[0]), target: strings.Trim(string(clean[m[2]:m[3]]), "<>")})
	}
	for _, m := range htmlLink.FindAllSubmatchIndex(clean, -1) {
		out = append(out, link{line: lineAt(m[0]), target: string(clean[m[2]:m[3]])})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].line < out[j].line })
	return out
}

// blankCode returns text with fenced code blocks, and code spans if spans
// is set, replaced by spaces, newlines kept, so that offsets and line
// numbers stay the same.
func blankCode(text []byte, spans bool) []byte {
	out := bytes.Clone(text)
	blank := func(from, to int) {
		for i := from; i < to; i++ {
			if out[i] != '\n' {
				out[i] = ' '
			}
		}
	}
	// Fenced blocks, line by line.
	var fence string
	off := 0
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		end := off + len(line)
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case fence != "":
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" \t") == "" {
				fence = ""
			}
			blank(off, end)
		case len(line)-len(trimmed) <= 3 && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")):
			n := len(trimmed) - len(strings.TrimLeft(trimmed, trimmed[:1]))
			fence = strings.Repeat(trimmed[:1], n)
			blank(off, end)
		}
		off = end + 1
	}
	if !spans {
		return out
	}
	// Code spans: a run of n backticks up to the next run of exactly n.
	for i := 0; i < len(out); {
		if out[i] != '`' {
			i++
			continue
		}
		n := runLen(out, i)
		closeAt := -1
		for j := i + n; j < len(out); {
			if out[j] == '`' {
				m := runLen(out, j)
				if m == n {
					closeAt = j
					break
				}
				j += m
				continue
			}
			j++
		}
		if closeAt < 0 {
			i += n
			continue
		}
		blank(i, closeAt+n)
		i = closeAt + n
	}
	return out
}

func runLen(b []byte, i int) int {
	n := 0
	for i+n < len(b) && b[i+n] == b[i] {
		n++
	}
	return n
}

var (
	atxHeading    = regexp.MustCompile(`^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)
	setextUnder   = regexp.MustCompile(`^ {0,3}(?:=+|-+)[ \t]*$`)
	htmlAnchor    = regexp.MustCompile(`(?i)<a\s[^>]*\b(?:name|id)\s*=\s*"([^"]+)"`)
	headingLink   = regexp.MustCompile(`!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)`)
	headingMarkup = regexp.MustCompile(`<[^>]+>`)
)

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown text (duplicates numbered -1, -2, ...), and those of explicit
// <a name="..."> or id="..." tags.
func headingAnchors(text []byte) map[string]bool {
	anchors := map[string]bool{}
	count := map[string]int{}
	addHeading := func(h string) {
		s := slug(h)
		if n := count[s]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			anchors[s] = true
		}
		count[s]++
	}
	// Fenced blocks are blanked (a "# comment" in a shell block is not a
	// heading); code spans stay, their text is part of the anchor.
	lines := strings.Split(string(blankCode(text, false)), "\n")
	for i, line := range lines {
		if m := atxHeading.FindStringSubmatch(line); m != nil {
			addHeading(m[1])
		} else if i > 0 && setextUnder.MatchString(line) && strings.TrimSpace(lines[i-1]) != "" &&
			atxHeading.FindStringSubmatch(lines[i-1]) == nil && !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "|") &&
			(strings.Contains(line, "=") || i < 2 || strings.TrimSpace(lines[i-2]) == "") {
			addHeading(lines[i-1])
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			anchors[strings.ToLower(m[1])] = true
		}
	}
	return anchors
}

// slug is GitHub's anchor for a heading: its text, lower-cased, without
// link targets, tags and punctuation other than '-' and '_', with each
// space turned into '-'.
func slug(heading string) string {
	h := headingLink.ReplaceAllString(heading, "$1")
	h = headingMarkup.ReplaceAllString(h, "")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
