package main

import (
	"bytes"
	"context"
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// In-process tests of the pieces that need no database.

func TestRedact(t *testing.T) {
	t.Parallel()
	for dsn, secret := range map[string]string{
		"postgres://u:s3cret@h:5432/db":                 "s3cret",
		"postgres://u:s3%40cret@h:bad/db":               "s3@cret",
		"host=h user=u password=s3cret dbname=d":        "s3cret",
		"host=h user=u password='s3 cr\\'et' dbname=d":  "s3 cr'et",
		"PASSWORD = s3cret host=h":                      "s3cret",
		"postgres://u@h/db?password=s3cret&sslmode=off": "s3cret",
		"root:s3cret@tcp(127.0.0.1:3306)/test":          "s3cret",
		"mysql://root:s3%2Fcret@127.0.0.1:3306/test":    "s3/cret",
		"mariadb://root:s3cret@db/test?tls=true":        "s3cret",
		"root:s3:c@ret@tcp(127.0.0.1:3306)/test?x=1":    "s3:c@ret",
	} {
		msg := redact("error: "+secret+" and "+dsn, dsnSecrets(dsn))
		assert.NotContains(t, msg, secret, "redact for DSN %q", dsn)
	}
}

func TestDisplay(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain":             "plain",
		`in "quotes" ünï 🔒`: `in "quotes" ünï 🔒`,
		"":                  `""`,
		`"quoted"`:          `"\"quoted\""`,
		" lead":             `" lead"`,
		"trail ":            `"trail "`,
		"tab\there":         `"tab\there"`,
		"new\nline":         `"new\nline"`,
		"bidi\u202eover":    `"bidi\u202eover"`,
		"esc\x1b[31m":       `"esc\x1b[31m"`,
		"bad\xffutf8":       `"bad\xffutf8"`,
	} {
		assert.Equal(t, want, display(in), "display(%q)", in)
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		-time.Second:                      "0s",
		0:                                 "0s",
		40 * time.Millisecond:             "0s",
		1234 * time.Millisecond:           "1.2s",
		9940 * time.Millisecond:           "9.9s",
		12600 * time.Millisecond:          "13s",
		time.Hour + 2*time.Minute + 499e6: "1h2m0s",
	} {
		assert.Equal(t, want, formatDuration(d), "formatDuration(%v)", d)
	}
}

// TestScanArgs checks that flags are found wherever they are before a
// "--", with their values, and that nothing after it is a flag.
func TestScanArgs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args          []string
		before, after []string
		dash          bool
		json          bool
		dsn           string
	}{
		{args: []string{"id", "-json"}, before: []string{"id"}, json: true},
		{args: []string{"-json", "id", "-dsn", "x.db"}, before: []string{"id"}, json: true, dsn: "x.db"},
		{args: []string{"id", "--dsn=x.db", "-json=false"}, before: []string{"id"}, dsn: "x.db"},
		{args: []string{"-", "id"}, before: []string{"-", "id"}},
		{args: []string{"id", "--", "-json", "-dsn", "y"}, before: []string{"id"}, after: []string{"-json", "-dsn", "y"}, dash: true},
		{args: []string{"-dsn", "--", "id"}, before: []string{"id"}, dsn: "--"},
	} {
		o := defaultOptions()
		before, after, dash, err := scanArgs(o.flagSet(commands["release"]), c.args)
		require.NoError(t, err, "%q", c.args)
		assert.Equal(t, c.before, before, "%q: before", c.args)
		assert.Equal(t, c.after, after, "%q: after", c.args)
		assert.Equal(t, c.dash, dash, "%q: dash", c.args)
		assert.Equal(t, c.json, o.json, "%q: -json", c.args)
		assert.Equal(t, c.dsn, o.dsn, "%q: -dsn", c.args)
	}
	o := defaultOptions()
	_, _, _, err := scanArgs(o.flagSet(nil), []string{"x", "-h"})
	assert.ErrorIs(t, err, flag.ErrHelp)
	_, _, _, err = scanArgs(o.flagSet(nil), []string{"x", "-dsn"})
	assert.ErrorContains(t, err, "flag needs an argument: -dsn")
}

func TestJSONWanted(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"release", "-json"}, true},
		{[]string{"--json", "bogus"}, true},
		{[]string{"-json=true", "x"}, true},
		{[]string{"-json", "-json=false"}, false},
		{[]string{"-json=maybe"}, false},
		{[]string{"run", "id", "--", "cmd", "-json"}, false},
		{[]string{"list"}, false},
	} {
		assert.Equal(t, c.want, jsonWanted(c.args), "jsonWanted(%q)", c.args)
	}
}

func TestRunArgs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		before, after []string
		dash          bool
		want          []string
		err           string
	}{
		{before: []string{"id"}, after: []string{"cmd", "-x", "--", "y"}, dash: true, want: []string{"id", "cmd", "-x", "--", "y"}},
		{after: []string{"-id", "--", "cmd"}, dash: true, want: []string{"-id", "cmd"}},
		{before: []string{"id"}, err: `missing "--" and COMMAND`},
		{before: []string{"id", "cmd"}, err: `unexpected argument "cmd"`},
		{before: []string{"id"}, dash: true, err: `missing COMMAND after "--"`},
		{dash: true, err: "missing LOCK_ID"},
		{after: []string{"-id", "cmd"}, dash: true, err: `missing "--" between LOCK_ID and COMMAND`},
		{after: []string{"-id", "--"}, dash: true, err: `missing COMMAND after "--"`},
	} {
		got, err := runArgs(c.before, c.after, c.dash)
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, "runArgs(%q, %q)", c.before, c.after)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, c.want, got)
	}
}

func TestRunInProcess(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 2, run(ctx, []string{"nope"}, &stdout, &stderr), "run(nope)")
	assert.Contains(t, stderr.String(), `unknown command "nope"`)
	stdout.Reset()
	stderr.Reset()
	dsn := t.TempDir() + "/x.db"
	require.Equal(t, 0, run(ctx, []string{"-dsn", dsn, "migrate"}, &stdout, &stderr), "migrate: stderr %q", stderr.String())
	stdout.Reset()
	assert.Equal(t, 0, run(ctx, []string{"-dsn", dsn, "-json", "purge"}, &stdout, &stderr), "purge: stderr %q", stderr.String())
	assert.Equal(t, "{\n  \"purged\": 0\n}\n", stdout.String())
}
