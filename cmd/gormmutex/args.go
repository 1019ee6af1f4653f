package main

import (
	"flag"
	"strconv"
	"strings"
)

// Flags may come anywhere on the command line, before or after the
// command and its arguments, up to a "--": the standard flag package stops
// at the first argument that is not a flag, so the command line is walked
// here one argument at a time and each flag is handed to the FlagSet with
// its value.

// isFlag says whether arg is written as a flag: "-x", "--x", "-x=v".
// A lone "-" is an argument (conventionally standard input), and "--" ends
// the flags.
func isFlag(arg string) bool {
	return len(arg) > 1 && arg[0] == '-' && arg != "--"
}

// parseFlag parses the flag at args[0] with fs, taking its value from
// args[1] where the flag needs one and is not written -flag=value, and
// returns how many arguments it used. The errors are the flag package's:
// flag.ErrHelp for -h and -help, "flag provided but not defined" and
// "flag needs an argument".
func parseFlag(fs *flag.FlagSet, args []string) (int, error) {
	name := strings.TrimPrefix(strings.TrimPrefix(args[0], "-"), "-")
	name, _, hasValue := strings.Cut(name, "=")
	n := 1
	if f := fs.Lookup(name); f != nil && !hasValue && !isBoolFlag(f) && len(args) > 1 {
		n = 2
	}
	// An unknown flag, or one whose value is missing, makes Parse fail with
	// the flag package's own message.
	if err := fs.Parse(args[:n]); err != nil {
		return 0, err
	}
	return n, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// scanArgs parses every flag in args with fs and returns the other
// arguments in order: before, those before the first "--", and after,
// those after it, which are never parsed as flags. dash reports whether
// there was a "--".
func scanArgs(fs *flag.FlagSet, args []string) (before, after []string, dash bool, err error) {
	for len(args) > 0 {
		switch arg := args[0]; {
		case arg == "--":
			return before, args[1:], true, nil
		case isFlag(arg):
			n, err := parseFlag(fs, args)
			if err != nil {
				return nil, nil, false, err
			}
			args = args[n:]
		default:
			before = append(before, arg)
			args = args[1:]
		}
	}
	return before, nil, false, nil
}

// jsonWanted says whether args ask for -json, for reporting an error that
// stops the parsing before it reaches the flag. It looks at the arguments
// before the first "--" only, and the last -json there wins, as it does
// when the flags parse.
func jsonWanted(args []string) bool {
	want := false
	for _, arg := range args {
		if arg == "--" {
			break
		}
		if !isFlag(arg) {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-"), "=")
		if name != "json" {
			continue
		}
		if !hasValue {
			want = true
			continue
		}
		b, err := strconv.ParseBool(value)
		want = err == nil && b
	}
	return want
}
