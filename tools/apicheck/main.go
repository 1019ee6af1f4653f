// Command apicheck records the exported API of this repository's public
// modules and compares the code against the record, so that no change to
// the API goes unnoticed.
//
//	go run ./apicheck -repo .. write   # record api/<module>.txt
//	go run ./apicheck -repo .. check   # compare, with CHANGELOG.md
//
// The record has one line per exported feature, as the Go project's api/
// files do: every exported const, var, func and type of every package a
// user can import (internal packages, commands and examples left out),
// every exported field of an exported struct, every method of an
// exported interface, and every exported method in the method set of an
// exported type and of a pointer to it (promoted ones included).
//
// check fails when a recorded line is gone (a removed or changed
// identifier: an incompatible change) unless the newest entry of
// CHANGELOG.md (its first "## " heading) names the identifier under a
// "Breaking" heading; when a method is added to an exported interface
// that has no unexported methods (every implementation elsewhere breaks)
// unless it is named under "Breaking" too; and when any other new line is
// not named anywhere in that entry (a compatible addition must be listed
// too). Once the changes are listed, `make api` records the new API.
//
// A method or field M of the type T is named as `T.M`, `pkg.T.M`,
// `(*T).M` or "`M` of `T`"; anything else as `pkg.N` or `N` (see
// [names] for the exact rule). Each failure gives the spelling to use.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"go/types"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/tools/go/packages"
)

// modules are the public modules' folders, relative to the repository.
var modules = []string{".", "gocronlock", "robfigcronlock", "otelgormmutex"}

// rootPackage is the package users take locks with, and rootBudget the
// most features it may export (types, funcs, methods, consts, vars, struct
// fields and interface methods): users who take locks should see locks,
// and vocabulary such as the Observer's lives in packages of its own.
const (
	rootPackage = "github.com/gormmutex/gormmutex"
	rootBudget  = 110
)

func main() {
	repo := flag.String("repo", ".", "the repository's root")
	flag.Parse()
	if flag.NArg() != 1 || (flag.Arg(0) != "write" && flag.Arg(0) != "check") {
		fmt.Fprintln(os.Stderr, "usage: apicheck [-repo DIR] write|check")
		os.Exit(2)
	}
	var err error
	if flag.Arg(0) == "write" {
		err = write(*repo, modules)
	} else {
		err = check(*repo, modules)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "apicheck:", err)
		os.Exit(1)
	}
}

// baselineFile is the record of the module in dir.
func baselineFile(repo, dir string) string {
	name := filepath.Base(dir)
	if dir == "." {
		name = "gormmutex"
	}
	return filepath.Join(repo, "api", name+".txt")
}

func write(repo string, dirs []string) error {
	if err := os.MkdirAll(filepath.Join(repo, "api"), 0o755); err != nil {
		return err
	}
	for _, dir := range dirs {
		lines, err := features(filepath.Join(repo, dir))
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		if err := os.WriteFile(baselineFile(repo, dir), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return err
		}
		fmt.Printf("apicheck: %s: %d features recorded\n", dir, len(lines))
	}
	return nil
}

func check(repo string, dirs []string) error {
	heading, entry, breaking, err := newestEntry(filepath.Join(repo, "CHANGELOG.md"))
	if err != nil {
		return err
	}
	var problems []string
	for _, dir := range dirs {
		want, err := readLines(baselineFile(repo, dir))
		if err != nil {
			return fmt.Errorf("%s: %w (record it with `make api`)", dir, err)
		}
		got, err := features(filepath.Join(repo, dir))
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		if p := overBudget(got); p != "" {
			problems = append(problems, p)
		}
		removed, added := diff(want, got)
		ifaces, sealed := interfaces(want)
		for _, l := range removed {
			if !names(breaking, l) {
				problems = append(problems, problem(l, "removed or changed", true))
			}
		}
		for _, l := range added {
			if iface, ok := interfaceOf(l); ok && ifaces[iface] && !sealed[iface] {
				// Every implementation outside the package lacks the
				// new method, and no longer satisfies the interface.
				if !names(breaking, l) {
					problems = append(problems, problem(l, "added to an exported interface, which breaks its implementations", true))
				}
				continue
			}
			if !names(entry, l) {
				problems = append(problems, problem(l, "added", false))
			}
		}
		fmt.Printf("apicheck: %s: %d features, %d removed or changed, %d added\n", dir, len(got), len(removed), len(added))
	}
	if len(problems) > 0 {
		return fmt.Errorf("the API differs from api/ in ways CHANGELOG.md's newest entry (%q) does not list:\n%s"+
			"once they are listed, record the API with `make api`", heading, strings.Join(problems, ""))
	}
	return nil
}

// overBudget describes the root package's features beyond rootBudget, or
// returns "".
func overBudget(lines []string) string {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "pkg "+rootPackage+", ") {
			n++
		}
	}
	if n <= rootBudget {
		return ""
	}
	return fmt.Sprintf("- the package %s exports %d features, more than its budget of %d: move what users who take locks do not need into a package of its own (as the Observer's events are in observe)\n", rootPackage, n, rootBudget)
}

// problem describes the unlisted change on line l, with the bullet that
// would list it.
func problem(l, what string, breaking bool) string {
	where := `in any section of the newest entry (an addition: "### Added")`
	if breaking {
		where = `under "### Breaking" in the newest entry`
	}
	return fmt.Sprintf("  %s: %s\n    list it %s, spelled %s; for example:\n      - %s: ...\n",
		what, l, where, spellings(l), spelling(l))
}

// spelling is the name a changelog bullet gives the feature on line l:
// `T.M` for a method or field (of the type T), `pkg.N` for anything else.
func spelling(l string) string {
	k := key(l)
	if parts := strings.Split(k, "."); len(parts) == 3 {
		return "`" + parts[1] + "." + parts[2] + "`"
	}
	return "`" + k + "`"
}

// spellings lists the spellings [names] accepts for line l.
func spellings(l string) string {
	parts := strings.Split(key(l), ".")
	if len(parts) == 3 {
		p, t, m := parts[0], parts[1], parts[2]
		return fmt.Sprintf("`%s.%s` (or `%s.%s.%s`, `(*%s).%s`, or `%s` of `%s`)", t, m, p, t, m, t, m, m, t)
	}
	if len(parts) != 2 {
		return "`" + key(l) + "`"
	}
	return fmt.Sprintf("`%s.%s` (or `%s`)", parts[0], parts[1], parts[1])
}

var (
	reIface     = regexp.MustCompile(`^pkg ([^,]+), type (\w+)(?:\[[^\]]*\])? interface`)
	reIfaceOnly = regexp.MustCompile(`^pkg ([^,]+), type (\w+)(?:\[[^\]]*\])? interface$`)
)

// interfaces returns the exported interfaces the baseline lines record
// (as "pkg.Type", the package's full path), and those of them that have
// unexported methods: no other package can implement these, so a method
// added to one breaks nobody.
func interfaces(lines []string) (ifaces, sealed map[string]bool) {
	ifaces, sealed = map[string]bool{}, map[string]bool{}
	for _, l := range lines {
		if m := reIfaceOnly.FindStringSubmatch(l); m != nil {
			ifaces[m[1]+"."+m[2]] = true
		}
		if m := reIface.FindStringSubmatch(l); m != nil && strings.HasSuffix(l, ", unexported methods") {
			sealed[m[1]+"."+m[2]] = true
		}
	}
	return ifaces, sealed
}

// interfaceOf returns the interface ("pkg.Type") whose method line l
// records.
func interfaceOf(l string) (string, bool) {
	if m := reIface.FindStringSubmatch(l); m != nil && len(l) > len(m[0]) {
		return m[1] + "." + m[2], true
	}
	return "", false
}

// features lists the exported API of the module in dir, sorted.
func features(dir string) ([]string, error) {
	cfg := &packages.Config{
		Mode: packages.NeedName | packages.NeedTypes | packages.NeedTypesInfo | packages.NeedSyntax,
		Dir:  dir,
		Env:  append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod"),
	}
	pkgs, err := packages.Load(cfg, "./...")
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, p := range pkgs {
		if len(p.Errors) > 0 {
			return nil, fmt.Errorf("%s: %v", p.PkgPath, p.Errors[0])
		}
		if p.Name == "main" || isInternal(p.PkgPath) {
			continue
		}
		for _, l := range pkgFeatures(p.Types) {
			set[l] = true
		}
	}
	var lines []string
	for l := range set {
		lines = append(lines, l)
	}
	sort.Strings(lines)
	return lines, nil
}

func isInternal(path string) bool {
	for _, part := range strings.Split(path, "/") {
		if part == "internal" || part == "examples" || part == "testdata" {
			return true
		}
	}
	return false
}

// pkgFeatures lists one package's exported features.
func pkgFeatures(pkg *types.Package) []string {
	q := types.RelativeTo(pkg)
	pre := "pkg " + pkg.Path() + ", "
	var out []string
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		obj := scope.Lookup(name)
		if !obj.Exported() {
			continue
		}
		switch o := obj.(type) {
		case *types.Const:
			out = append(out, pre+"const "+name+" "+types.TypeString(o.Type(), q))
		case *types.Var:
			out = append(out, pre+"var "+name+" "+types.TypeString(o.Type(), q))
		case *types.Func:
			out = append(out, pre+"func "+name+sig(o.Type(), q))
		case *types.TypeName:
			out = append(out, typeFeatures(pre, o, q)...)
		}
	}
	return out
}

func typeFeatures(pre string, tn *types.TypeName, q types.Qualifier) []string {
	name := tn.Name()
	if tn.IsAlias() {
		return []string{pre + "type " + name + " = " + types.TypeString(tn.Type(), q)}
	}
	named, ok := tn.Type().(*types.Named)
	if !ok {
		return []string{pre + "type " + name + " " + types.TypeString(tn.Type(), q)}
	}
	if tp := named.TypeParams(); tp != nil && tp.Len() > 0 {
		var ps []string
		for i := 0; i < tp.Len(); i++ {
			ps = append(ps, tp.At(i).Obj().Name()+" "+types.TypeString(tp.At(i).Constraint(), q))
		}
		name += "[" + strings.Join(ps, ", ") + "]"
	}
	var out []string
	switch u := named.Underlying().(type) {
	case *types.Struct:
		out = append(out, pre+"type "+name+" struct")
		for i := 0; i < u.NumFields(); i++ {
			f := u.Field(i)
			if f.Exported() {
				emb := ""
				if f.Embedded() {
					emb = "embedded "
				}
				out = append(out, pre+"type "+name+" struct, "+emb+f.Name()+" "+types.TypeString(f.Type(), q))
			}
		}
	case *types.Interface:
		out = append(out, pre+"type "+name+" interface")
		for i := 0; i < u.NumMethods(); i++ {
			m := u.Method(i)
			if m.Exported() {
				out = append(out, pre+"type "+name+" interface, "+m.Name()+sig(m.Type(), q))
			} else {
				out = append(out, pre+"type "+name+" interface, unexported methods")
			}
		}
	default:
		out = append(out, pre+"type "+name+" "+types.TypeString(u, q))
	}
	// Methods of T and of *T, promoted ones included; an interface's are
	// listed above.
	if _, isIface := named.Underlying().(*types.Interface); !isIface {
		seen := map[string]bool{}
		for _, recv := range []types.Type{named, types.NewPointer(named)} {
			ms := types.NewMethodSet(recv)
			for i := 0; i < ms.Len(); i++ {
				m := ms.At(i).Obj()
				if !m.Exported() || seen[m.Name()] {
					continue
				}
				seen[m.Name()] = true
				r := tn.Name()
				if _, ptr := recv.(*types.Pointer); ptr {
					r = "*" + r
				}
				out = append(out, pre+"method ("+r+") "+m.Name()+sig(m.Type(), q))
			}
		}
	}
	return out
}

// sig prints a func type without its parameters' names, which callers
// cannot depend on, and without the "func" keyword.
func sig(t types.Type, q types.Qualifier) string {
	s, ok := t.(*types.Signature)
	if !ok {
		return " " + types.TypeString(t, q)
	}
	unnamed := func(tu *types.Tuple) *types.Tuple {
		var vs []*types.Var
		for i := 0; i < tu.Len(); i++ {
			vs = append(vs, types.NewParam(tu.At(i).Pos(), tu.At(i).Pkg(), "", tu.At(i).Type()))
		}
		return types.NewTuple(vs...)
	}
	bare := types.NewSignatureType(nil, nil, nil, unnamed(s.Params()), unnamed(s.Results()), s.Variadic())
	return strings.TrimPrefix(types.TypeString(bare, q), "func")
}

var (
	reFunc   = regexp.MustCompile(`^pkg ([^,]+), func (\w+)`)
	reMethod = regexp.MustCompile(`^pkg ([^,]+), method \(\*?(\w+)\) (\w+)`)
	reMember = regexp.MustCompile(`^pkg ([^,]+), type (\w+)(?:\[[^\]]*\])? (?:struct|interface), (?:embedded )?(\w+)`)
	reOther  = regexp.MustCompile(`^pkg ([^,]+), (?:const|var|type) (\w+)`)
)

// key returns the name a changelog uses for the feature on line l:
// pkg.Name, pkg.Type.Method or pkg.Type.Field, pkg being the package's
// last path element.
func key(l string) string {
	if strings.HasSuffix(l, " interface, unexported methods") {
		l = strings.TrimSuffix(l, ", unexported methods")
	}
	for _, re := range []*regexp.Regexp{reMethod, reMember} {
		if m := re.FindStringSubmatch(l); m != nil {
			return filepath.Base(m[1]) + "." + m[2] + "." + m[3]
		}
	}
	for _, re := range []*regexp.Regexp{reFunc, reOther} {
		if m := re.FindStringSubmatch(l); m != nil {
			return filepath.Base(m[1]) + "." + m[2]
		}
	}
	return l
}

// names reports whether text names the feature on line l. The rule, for
// a method or field M of the type T in the package pkg (key pkg.T.M):
//
//   - pkg.T.M anywhere, in backquotes or not;
//   - in backquotes, T.M, (*T).M or (T).M, the type optionally written
//     pkg.T, and followed by the closing backquote, "(", "[" or a space:
//     `T.M`, `(*T).M`, `T.M(ctx)`;
//   - `M` of `T`: M in backquotes (optionally with its arguments, as in
//     `M(ctx)`), the word "of", then T in backquotes (optionally *T or
//     pkg.T).
//
// For anything else, a const, var, func or type N (key pkg.N): pkg.N
// anywhere, or N in backquotes followed by the closing backquote, "(",
// "[" or a space: `N`, `N(db, cfg)`. Line breaks count as spaces.
func names(text, l string) bool {
	text = strings.Join(strings.Fields(text), " ")
	k := key(l)
	q := regexp.QuoteMeta
	if regexp.MustCompile(`(^|[^\w.])` + q(k) + `($|[^\w])`).MatchString(text) {
		return true
	}
	parts := strings.Split(k, ".")
	end := "[`(\\[ ]"
	switch len(parts) {
	case 2:
		return regexp.MustCompile("`" + q(parts[1]) + end).MatchString(text)
	case 3:
	default:
		return false
	}
	p, t, m := q(parts[0]), q(parts[1]), q(parts[2])
	typ := `(?:` + p + `\.)?` + t
	for _, re := range []string{
		"`" + typ + `\.` + m + end,
		"`\\(\\*?" + typ + `\)\.` + m + end,
		"`" + m + "(?:[(\\[][^`]*)?` of `\\*?" + typ + "[`\\[]",
	} {
		if regexp.MustCompile(re).MatchString(text) {
			return true
		}
	}
	return false
}

// newestEntry returns the heading and the text of CHANGELOG.md's newest
// entry (the first "## " heading to the next), and the text of its
// "Breaking" sections.
func newestEntry(path string) (heading, entry, breaking string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", "", err
	}
	defer f.Close()
	var e, b strings.Builder
	in, inBreaking := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			if in {
				break
			}
			in, heading = true, line
			continue
		}
		if !in {
			continue
		}
		if strings.HasPrefix(line, "### ") {
			inBreaking = strings.Contains(strings.ToLower(line), "breaking")
		}
		e.WriteString(line + "\n")
		if inBreaking {
			b.WriteString(line + "\n")
		}
	}
	if !in {
		return "", "", "", fmt.Errorf("%s has no entry (a \"## \" heading)", path)
	}
	return heading, e.String(), b.String(), sc.Err()
}

func readLines(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

// diff returns the lines of want missing from got, and of got missing
// from want.
func diff(want, got []string) (removed, added []string) {
	w, g := map[string]bool{}, map[string]bool{}
	for _, l := range want {
		w[l] = true
	}
	for _, l := range got {
		g[l] = true
	}
	for _, l := range want {
		if !g[l] {
			removed = append(removed, l)
		}
	}
	for _, l := range got {
		if !w[l] {
			added = append(added, l)
		}
	}
	return removed, added
}
