// Package examples_test builds the example programs and runs each one, as
// a user would, on SQLite.
package examples_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProcesses runs examples/processes: three scheduler processes on one
// SQLite file, one of them killed with SIGKILL. The program checks its own
// table; the test checks that the output says each tick ran exactly once,
// and that no run was recorded twice (the table's key would refuse it and
// the scheduler would log the error).
func TestProcesses(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the example with")
	}
	bin := filepath.Join(t.TempDir(), "processes")
	out, err := exec.Command(goTool, "build", "-o", bin, "./processes").CombinedOutput()
	require.NoError(t, err, "go build:\n%s", out)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	t.Logf("output:\n%s\nstderr:\n%s", stdout, stderr.String())
	require.NoError(t, err)

	got := string(stdout)
	assert.Contains(t, got, "3 processes, one job every second, ticks 1 to 6\n")
	m := regexp.MustCompile(`(?m)^killed (process [123]) with SIGKILL after it ran tick [123]$`).FindStringSubmatch(got)
	require.NotNil(t, m, "the program did not kill a process")
	for tick := 1; tick <= 6; tick++ {
		assert.Regexp(t, regexp.MustCompile(`(?m)^  tick `+string(rune('0'+tick))+`: ran on process [123]$`), got)
	}
	for tick := 4; tick <= 6; tick++ {
		assert.NotContains(t, got, "  tick "+string(rune('0'+tick))+": ran on "+m[1]+"\n", "a killed process ran a later tick")
	}
	assert.Contains(t, got, "OK: every tick ran exactly once, and the killed process's ticks were taken over\n")
	assert.NotContains(t, got, "FAIL")
	assert.NotContains(t, stderr.String(), "UNIQUE constraint failed", "a tick ran twice")
}
