// Command proxycheck checks that every public module of this repository
// resolves outside it, as a user's `go get` would resolve it once the
// release is tagged.
//
// It lays out a file:// module proxy from the repository's HEAD commit,
// with every public module at the release version (zips made by
// golang.org/x/mod/zip from `git archive`, as the public proxy makes them
// from a tag; a linked worktree works too), and checks each zip: a LICENSE
// of the module's own at its top, and nothing a consumer should not get
// (databases, benchmark results, binaries, files over 1 MB that are not
// docs, another module's files). Then, for each install line of
// README.md, in a fresh module outside the repository (GOWORK=off,
// GOFLAGS=-mod=mod), it runs that line exactly and builds a program that
// uses what it installed; the program for the root module also runs,
// taking a lock on SQLite. The root's line goes first, alone; then two
// lines are checked at a time (-parallel).
//
// The consumers share one module cache. By default it is kept between
// runs in the user's cache folder (-cache), so other modules are not
// fetched and compiled again (SQLite's cgo driver above all); this
// repository's modules are purged from it before and after each run, under
// a lock, so they only ever come from this run's proxy. -cache "" gives a
// run a fresh cache of its own.
//
//	go run ./proxycheck -repo .. -version v0.1.0
//
// Only committed files reach the zips, as only they reach a tag.
package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// public are the folders of the modules users install, relative to the
// repository's root. bench, topology and tools are for this repository
// only and are never published.
var public = []string{".", "gocronlock", "robfigcronlock", "otelgormmutex"}

func main() {
	var o options
	flag.StringVar(&o.repo, "repo", ".", "the repository's root")
	flag.StringVar(&o.version, "version", "v0.1.0", "the release version to check")
	flag.BoolVar(&o.keep, "keep", false, "keep the proxy and the consumer modules (their folder is printed)")
	flag.StringVar(&o.cache, "cache", "", "a module cache the consumers share, kept between runs for other modules than this repository's, e.g. ~/.cache/gormmutex-proxycheck (empty, the default: a fresh one in the work folder; a kept one once compiled a mix of an old and a new tree)")
	flag.IntVar(&o.parallel, "parallel", 2, "how many install lines are checked at a time")
	flag.Parse()
	start := time.Now()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "proxycheck: FAIL:", err)
		os.Exit(1)
	}
	fmt.Printf("proxycheck: ok (%s)\n", time.Since(start).Round(time.Second))
}

type options struct {
	repo, version string
	keep          bool
	cache         string
	parallel      int
}

func run(o options) error {
	root, err := filepath.Abs(o.repo)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "proxycheck-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("proxycheck: working in", work)
	} else {
		defer removeAll(work)
	}
	proxy := filepath.Join(work, "proxy")
	var paths []string
	for _, dir := range public {
		p, err := publish(root, dir, o.version, proxy)
		if err != nil {
			return fmt.Errorf("module in %s: %w", dir, err)
		}
		paths = append(paths, p)
		fmt.Printf("proxycheck: %s@%s laid out\n", p, o.version)
	}
	lines, err := installLines(filepath.Join(root, "README.md"))
	if err != nil {
		return err
	}
	if err := checkLines(lines, paths, o.version); err != nil {
		return err
	}
	modcache := filepath.Join(work, "modcache")
	if o.cache != "" {
		unlock, err := lockCache(o.cache)
		if err != nil {
			return err
		}
		defer unlock()
		modcache = filepath.Join(o.cache, "modcache")
		// Only other modules' copies are kept: this repository's come
		// from this run's proxy, or from nowhere.
		purge(modcache, paths[0])
		defer purge(modcache, paths[0])
	}
	env, err := consumerEnv(work, modcache, proxy, paths[0])
	if err != nil {
		return err
	}
	return consumeAll(work, lines, env, o.parallel)
}

// consumeAll checks every install line, each in a fresh module, and
// returns their errors. The first line (the root module's, which every
// other needs, with SQLite's cgo driver) runs alone, filling the module
// and build caches; then the others run parallel at a time, so that two
// go commands never compile the same packages at once.
func consumeAll(work string, lines []string, env []string, parallel int) error {
	errs := make([]error, len(lines))
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, line := range lines {
		if i == 1 {
			wg.Wait()
		}
		wg.Add(1)
		sem <- struct{}{} // in the README's order
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			err := consume(filepath.Join(work, fmt.Sprintf("consumer%d", i)), line, env)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", line, err)
				fmt.Printf("proxycheck: %s: FAIL (%s)\n", line, time.Since(start).Round(100*time.Millisecond))
				return
			}
			fmt.Printf("proxycheck: %s: ok (%s)\n", line, time.Since(start).Round(100*time.Millisecond))
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// purge removes this repository's modules from the module cache, the
// extracted folders and the downloads.
func purge(modcache, rootPath string) {
	owner := path.Dir(rootPath) // github.com/gormmutex
	removeAll(filepath.Join(modcache, filepath.FromSlash(owner)))
	removeAll(filepath.Join(modcache, "cache", "download", filepath.FromSlash(owner)))
}

// publish writes the module in dir of the repository's HEAD commit into
// the proxy folder at version, and returns its path.
func publish(root, dir, version, proxy string) (string, error) {
	gomod, err := git(root, "show", "HEAD:"+path.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	mf, err := modfile.ParseLax("go.mod", gomod, nil)
	if err != nil {
		return "", err
	}
	if mf.Module == nil {
		return "", errors.New("go.mod names no module")
	}
	modPath := mf.Module.Mod.Path
	// A requirement of another module of this repository at a version
	// other than the release is one no consumer can reach (the
	// v0.0.0-00010101000000-000000000000 placeholder that only a replace
	// resolves, say).
	for _, r := range mf.Require {
		if strings.HasPrefix(r.Mod.Path, "github.com/gormmutex/gormmutex") && r.Mod.Version != version {
			return "", fmt.Errorf("%s requires %s@%s, not the release %s: a consumer cannot resolve it (replace directives apply only in this repository)",
				modPath, r.Mod.Path, r.Mod.Version, version)
		}
	}
	escaped, err := module.EscapePath(modPath)
	if err != nil {
		return "", err
	}
	at := filepath.Join(proxy, filepath.FromSlash(escaped), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		return "", err
	}
	mv := module.Version{Path: modPath, Version: version}
	zipPath := filepath.Join(at, version+".zip")
	f, err := os.Create(zipPath)
	if err != nil {
		return "", err
	}
	files, err := committedFiles(root, "HEAD", dir)
	if err == nil {
		err = modzip.Create(f, mv, files)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("zip: %w", err)
	}
	if err := checkZip(zipPath, mv); err != nil {
		return "", err
	}
	when, err := git(root, "log", "-1", "--format=%cI", "HEAD")
	if err != nil {
		return "", err
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(when)))
	if err != nil {
		return "", err
	}
	info, _ := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, t.UTC()})
	for name, data := range map[string][]byte{
		version + ".mod":  gomod,
		version + ".info": info,
		"list":            []byte(version + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(at, name), data, 0o644); err != nil {
			return "", err
		}
	}
	return modPath, nil
}

// maxZip is far above what the modules need (a few hundred kilobytes)
// and far below the proxy's own limit: a zip larger than this holds
// something that does not belong.
const maxZip = 4 << 20

// maxFile is the largest file a zip may hold, docs aside: no source file
// of these modules comes near it, and a larger one is data or a binary.
const maxFile = 1 << 20

// checkZip checks what the zip of mv holds: a LICENSE of its own at its
// top, and nothing but what a consumer needs (see [unwanted]).
func checkZip(zipPath string, mv module.Version) error {
	st, err := os.Stat(zipPath)
	if err != nil {
		return err
	}
	if st.Size() > maxZip {
		return fmt.Errorf("the zip is %d bytes, more than %d", st.Size(), maxZip)
	}
	if _, err := modzip.CheckZip(mv, zipPath); err != nil {
		return err
	}
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return err
	}
	defer zr.Close()
	prefix := mv.String() + "/"
	license := false
	var bad []string
	for _, zf := range zr.File {
		rel := strings.TrimPrefix(zf.Name, prefix)
		if rel == "LICENSE" {
			license = true
		}
		rc, err := zf.Open()
		if err != nil {
			return err
		}
		head := make([]byte, 8000)
		n, err := io.ReadFull(rc, head)
		rc.Close()
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w", zf.Name, err)
		}
		if why := unwanted(rel, int64(zf.UncompressedSize64), head[:n]); why != "" {
			bad = append(bad, rel+" ("+why+")")
		}
	}
	if !license {
		return fmt.Errorf("the zip of %s has no LICENSE at its top: commit one in the module's folder (pkg.go.dev shows no documentation without one)", mv)
	}
	if len(bad) > 0 {
		return fmt.Errorf("the zip of %s holds files a consumer should not get: %s", mv, strings.Join(bad, ", "))
	}
	return nil
}

// forbiddenName matches the names of files no consumer should download:
// databases the tests or examples left, test binaries and profiles, build
// output, editor and OS litter.
var forbiddenName = regexp.MustCompile(`(?i)(\.(db|db-wal|db-shm|db-journal|sqlite3?|test|out|tmp|exe|dll|so|dylib|a|o|prof|pprof)$|(^|/)(topo\.bin|\.DS_Store)$)`)

// docExt are the extensions of documentation: text and the images it
// shows.
var docExt = []string{".md", ".txt", ".svg", ".png", ".jpg", ".jpeg", ".gif"}

// private are the folders of this repository's own modules: in a public
// module's zip they mean a go.mod went missing.
var private = []string{"bench", "topology", "tools"}

// unwanted says why the file rel (its size and first bytes given) does
// not belong in a module zip, or returns "". A consumer gets sources,
// go.mod and go.sum, LICENSE and docs; not a database (by name or by
// content), not benchmark results or other data files beyond docs, not
// an executable or other binary file (by content), not a file above
// [maxFile] other than docs, and nothing of bench, topology or tools.
func unwanted(rel string, size int64, head []byte) string {
	ext := strings.ToLower(path.Ext(rel))
	doc := slices.Contains(docExt, ext) || rel == "LICENSE"
	first := strings.SplitN(rel, "/", 2)[0]
	switch {
	case slices.Contains(private, first) && strings.Contains(rel, "/"):
		return "a file of the repository's own module " + first
	case forbiddenName.MatchString(rel):
		return "a database, binary or build output, by its name"
	case bytes.HasPrefix(head, []byte("SQLite format 3\x00")):
		return "a SQLite database"
	case isExecutable(head):
		return "an executable or object file"
	case !doc && slices.Contains(strings.Split(path.Dir(rel), "/"), "results"):
		return "benchmark results that are not docs"
	case !doc && size > maxFile:
		return fmt.Sprintf("%d bytes, more than %d, and not docs", size, maxFile)
	case !doc && bytes.IndexByte(head, 0) >= 0:
		return "a binary file"
	}
	return ""
}

// isExecutable reports whether head begins an ELF, Mach-O, PE or wasm
// binary, or an ar archive (a static library).
func isExecutable(head []byte) bool {
	for _, magic := range [][]byte{
		[]byte("\x7fELF"),
		{0xfe, 0xed, 0xfa, 0xce}, {0xfe, 0xed, 0xfa, 0xcf}, {0xce, 0xfa, 0xed, 0xfe}, {0xcf, 0xfa, 0xed, 0xfe}, {0xca, 0xfe, 0xba, 0xbe},
		[]byte("\x00asm"),
		[]byte("!<arch>\n"),
	} {
		if bytes.HasPrefix(head, magic) {
			return true
		}
	}
	// PE: "MZ", and the PE header where the DOS header says.
	return len(head) > 0x40 && bytes.HasPrefix(head, []byte("MZ"))
}

// installLines returns README.md's install commands for this
// repository's modules: the lines that begin with `go get` or `go
// install` of github.com/gormmutex/gormmutex, without their comments.
func installLines(readme string) ([]string, error) {
	f, err := os.Open(readme)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if (strings.HasPrefix(line, "go get github.com/gormmutex/gormmutex") ||
			strings.HasPrefix(line, "go install github.com/gormmutex/gormmutex")) && !slices.Contains(lines, line) {
			lines = append(lines, line)
		}
	}
	return lines, sc.Err()
}

// checkLines checks that the README installs every public module, and the
// command, at the release version.
func checkLines(lines, paths []string, version string) error {
	for _, p := range paths {
		if !slices.Contains(lines, "go get "+p+"@"+version) {
			return fmt.Errorf("README.md has no install line `go get %s@%s`", p, version)
		}
	}
	if !slices.Contains(lines, "go install "+paths[0]+"/cmd/gormmutex@"+version) {
		return fmt.Errorf("README.md has no install line `go install %s/cmd/gormmutex@%s`", paths[0], version)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, "@"+version) {
			return fmt.Errorf("README.md's install line %q is not at the release %s", l, version)
		}
	}
	return nil
}

// consumerEnv returns the environment of a consumer outside the
// repository: the file proxy first, then the module cache's downloads and
// the usual proxy for everything else; the module cache modcache, which
// holds no copy of this repository's modules when the run starts; no
// checksum database for this repository's modules, which it has never
// seen.
func consumerEnv(work, modcache, proxy, rootPath string) ([]string, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE", "GOPROXY").Output()
	if err != nil {
		return nil, err
	}
	f := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(f) != 2 {
		return nil, fmt.Errorf("go env: %q", out)
	}
	proxies := "file://" + filepath.ToSlash(proxy) + ",file://" + filepath.ToSlash(filepath.Join(f[0], "cache", "download"))
	if f[1] != "" && f[1] != "off" {
		proxies += "," + f[1]
	}
	env := []string{}
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "GOPROXY", "GOFLAGS", "GOWORK", "GOMODCACHE", "GONOSUMDB", "GOPRIVATE", "GONOPROXY", "GOBIN":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"GOPROXY="+proxies,
		"GOFLAGS=-mod=mod",
		"GOWORK=off",
		"GOMODCACHE="+modcache,
		"GONOSUMDB="+rootPath,
		"GOBIN="+filepath.Join(work, "bin"),
	), nil
}

// consume runs one install line in a fresh module in dir, then builds (and
// for the root module runs) a program that uses what it installed.
func consume(dir, line string, env []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := strings.Fields(line)
	if args[1] == "install" {
		if _, err := goCmd(dir, env, args[1:]...); err != nil {
			return err
		}
		bin := filepath.Join(envValue(env, "GOBIN"), "gormmutex")
		out, err := exec.Command(bin, "-h").CombinedOutput()
		if !strings.Contains(string(out), "Usage") && !strings.Contains(string(out), "usage") {
			return fmt.Errorf("the installed command's -h printed no usage (%v): %s", err, out)
		}
		return nil
	}
	if _, err := goCmd(dir, env, "mod", "init", "example.com/consumer"); err != nil {
		return err
	}
	if _, err := goCmd(dir, env, args[1:]...); err != nil {
		return err
	}
	modPath := strings.SplitN(args[2], "@", 2)[0]
	prog, ok := programs[modPath]
	if !ok {
		return fmt.Errorf("no consumer program for %s", modPath)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o644); err != nil {
		return err
	}
	// The program's other imports (a GORM driver, gocron) come the way a
	// user's would: go mod tidy finds them.
	if _, err := goCmd(dir, env, "mod", "tidy"); err != nil {
		return err
	}
	if err := checkRequire(dir, modPath, args[2]); err != nil {
		return err
	}
	if _, err := goCmd(dir, env, "build", "-o", "consumer", "."); err != nil {
		return err
	}
	out, err := exec.Command(filepath.Join(dir, "consumer")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "consumer: ok") {
		return fmt.Errorf("the consumer program failed (%v): %s", err, out)
	}
	return nil
}

// checkRequire checks that the consumer's go.mod requires the module at
// the version of the install line, after tidy.
func checkRequire(dir, modPath, pathAtVersion string) error {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return err
	}
	mf, err := modfile.Parse("go.mod", data, nil)
	if err != nil {
		return err
	}
	want := strings.SplitN(pathAtVersion, "@", 2)[1]
	for _, r := range mf.Require {
		if r.Mod.Path == modPath {
			if r.Mod.Version != want {
				return fmt.Errorf("go.mod requires %s@%s, want %s", modPath, r.Mod.Version, want)
			}
			return nil
		}
	}
	return fmt.Errorf("go.mod does not require %s after go mod tidy", modPath)
}

func goCmd(dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func git(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// removeAll removes the work folder; the module cache in it is read-only,
// as the go command leaves it.
func removeAll(dir string) {
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	_ = os.RemoveAll(dir)
}
