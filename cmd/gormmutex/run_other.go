//go:build !unix

package main

import (
	"context"
	"errors"
	"fmt"
)

// cmdRun needs process groups and Unix signals.
func cmdRun(_ context.Context, _ *env, args []string) error {
	id := args[0]
	return &failure{status: exitRunFailed, kind: "error", lockID: &id,
		err: errors.New("run is supported on Unix systems only")}
}

func signalName(n int) string { return fmt.Sprintf("signal %d", n) }
