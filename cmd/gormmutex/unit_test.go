package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// In-process tests of the pieces that need no database.

func TestRedact(t *testing.T) {
	for dsn, secret := range map[string]string{
		"postgres://u:s3cret@h:5432/db":                 "s3cret",
		"postgres://u:s3%40cret@h:bad/db":               "s3@cret",
		"host=h user=u password=s3cret dbname=d":        "s3cret",
		"host=h user=u password='s3 cr\\'et' dbname=d":  "s3 cr'et",
		"PASSWORD = s3cret host=h":                      "s3cret",
		"postgres://u@h/db?password=s3cret&sslmode=off": "s3cret",
		"root:s3cret@tcp(127.0.0.1:3306)/test":          "s3cret",
		"root:s3:c@ret@tcp(127.0.0.1:3306)/test?x=1":    "s3:c@ret",
	} {
		msg := redact("error: "+secret+" and "+dsn, dsnSecrets(dsn))
		if strings.Contains(msg, secret) {
			t.Errorf("redact for DSN %q left the password in %q", dsn, msg)
		}
	}
}

func TestDisplay(t *testing.T) {
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
		if got := display(in); got != want {
			t.Errorf("display(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRunInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"nope"}, &stdout, &stderr); code != 2 {
		t.Errorf("run(nope) = %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), `unknown command "nope"`) {
		t.Errorf("run(nope) stderr = %q", stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	dsn := t.TempDir() + "/x.db"
	if code := run(ctx, []string{"-dsn", dsn, "migrate"}, &stdout, &stderr); code != 0 {
		t.Fatalf("migrate = %d, stderr %q", code, stderr.String())
	}
	stdout.Reset()
	if code := run(ctx, []string{"-dsn", dsn, "-json", "purge"}, &stdout, &stderr); code != 0 || stdout.String() != "{\n  \"purged\": 0\n}\n" {
		t.Errorf("purge = %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}
