package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
	"time"

	modzip "golang.org/x/mod/zip"
)

// committedFiles returns the files of the module in dir (relative to the
// repository's root, "." for the root module) at revision, as `git
// archive` gives them: committed files only, with export-ignore applied,
// as the go command takes a tagged module from a git repository.
//
// [modzip.CreateFromVCS] would do the same, but it refuses a linked
// worktree (its .git is a file) and, for a module in a subdirectory
// without a LICENSE, silently takes the repository's root LICENSE; here
// every module must hold its own. [modzip.Create] then leaves out, as
// the proxy does, the files of nested modules and vendored packages.
func committedFiles(root, revision, dir string) ([]modzip.File, error) {
	args := []string{"-c", "core.autocrlf=input", "-c", "core.eol=lf", "archive", "--format=tar", revision}
	prefix := ""
	if dir != "." && dir != "" {
		prefix = strings.Trim(path.Clean(dir), "/") + "/"
		args = append(args, "--", prefix)
	}
	cmd := exec.Command("git", args...)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	var files []modzip.File
	tr := tar.NewReader(&stdout)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("git archive: %w", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader || h.Typeflag == tar.TypeDir {
			continue
		}
		name, ok := strings.CutPrefix(h.Name, prefix)
		if !ok || name == "" {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		// A symbolic link keeps its mode, and Create leaves it out, as
		// the go command does.
		files = append(files, memFile{name: name, mode: h.FileInfo().Mode(), data: data})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s has no committed files at %s", dir, revision)
	}
	return files, nil
}

// memFile is one file of a module, read from git, as [modzip.File].
type memFile struct {
	name string
	mode fs.FileMode
	data []byte
}

func (f memFile) Path() string                 { return f.name }
func (f memFile) Lstat() (os.FileInfo, error)  { return memInfo{f}, nil }
func (f memFile) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(f.data)), nil }

type memInfo struct{ f memFile }

func (i memInfo) Name() string       { return path.Base(i.f.name) }
func (i memInfo) Size() int64        { return int64(len(i.f.data)) }
func (i memInfo) Mode() fs.FileMode  { return i.f.mode }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }
