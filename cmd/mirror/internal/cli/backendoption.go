package cli

import (
	"fmt"
	"strings"

	"github.com/mirrorkit/mirror/core/mirror"
)

// backendOptionsEnv holds backend options for scripts, comma-separated
// KEY=VALUE; --backend-option wins over it for the same key.
const backendOptionsEnv = "MIRROR_BACKEND_OPTIONS"

// backendOptions merges the settings of backendOptionsEnv (env) and of the
// --backend-option flags into the options every backend plugin is opened
// with; nil when there are none. Which keys exist is the plugin's to say:
// here only the KEY=VALUE form is checked, and a key given twice in one
// place, which would leave one of the two unused.
func backendOptions(env string, flags []string) (map[string]string, error) {
	var opts map[string]string
	add := func(where, kv string, seen map[string]bool) error {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return fmt.Errorf("%w: %s %q: want KEY=VALUE, such as chunk-size=8388608", mirror.ErrUsage, where, kv)
		}
		if seen[k] {
			return fmt.Errorf("%w: %s: %s is given twice", mirror.ErrUsage, where, k)
		}
		seen[k] = true
		if opts == nil {
			opts = map[string]string{}
		}
		opts[k] = v
		return nil
	}
	fromEnv := map[string]bool{}
	for _, kv := range strings.Split(env, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		if err := add(backendOptionsEnv, kv, fromEnv); err != nil {
			return nil, fmt.Errorf("%w (a value with commas goes in --backend-option)", err)
		}
	}
	fromFlags := map[string]bool{}
	for _, kv := range flags {
		if err := add("--backend-option", kv, fromFlags); err != nil {
			return nil, err
		}
	}
	return opts, nil
}
