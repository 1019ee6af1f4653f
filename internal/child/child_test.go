package child

import (
	"bufio"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// modeEnv puts this test binary in the helper mode of the tests below.
const modeEnv = "GORMMUTEX_CHILD_TEST_MODE"

func TestMain(m *testing.M) {
	switch os.Getenv(modeEnv) {
	case "":
		os.Exit(m.Run())
	case "echo": // print a line, then echo each input line until stdin closes
		fmt.Println("hello from", os.Getenv("CHILD_TEST_NAME"))
		s := bufio.NewScanner(os.Stdin)
		for s.Scan() {
			fmt.Println("echo", s.Text())
		}
		fmt.Println("bye")
	case "sleep":
		fmt.Println("sleeping")
		time.Sleep(time.Minute)
	}
	os.Exit(0)
}

// TestLinesAndStdin: the helper gets the environment, its lines come in
// order, Line skips to the prefix it is asked for, and Lines ends when the
// helper exits after its input closes.
func TestLinesAndStdin(t *testing.T) {
	p := Start(t, Options{Env: []string{modeEnv + "=echo", "CHILD_TEST_NAME=x"}, Stdin: true})
	assert.Equal(t, "from x", p.Line(t, "hello", 30*time.Second), "the first line, after its prefix")
	fmt.Fprintln(p.Stdin(), "one")
	fmt.Fprintln(p.Stdin(), "two")
	assert.Equal(t, "one", p.Line(t, "echo", 10*time.Second), "the first echo")
	p.Stdin().Close()
	var rest []string
	for l := range p.Lines() {
		rest = append(rest, l)
	}
	assert.Equal(t, []string{"echo two", "bye"}, rest, "the rest of the output")
	require.NoError(t, p.Wait())
	require.NoError(t, p.Wait(), "Wait again")
}

// TestPauseResumeKill: a paused helper can be resumed and killed, and Wait
// reports the kill.
func TestPauseResumeKill(t *testing.T) {
	p := Start(t, Options{Env: []string{modeEnv + "=sleep"}})
	p.Line(t, "sleeping", 30*time.Second)
	require.NoError(t, p.Pause())
	require.NoError(t, p.Resume())
	require.NoError(t, p.Kill())
	assert.EqualError(t, p.Wait(), "signal: killed", "Wait after Kill")
}
