// version_test.go: the rule that decides whether a loaded library's version is one this
// package was built for.

package autograd

import (
	"errors"
	"testing"
)

func TestCheckVersionRule(t *testing.T) {
	for _, c := range []struct {
		loaded, built int
		ok            bool
	}{
		{100, 100, true},
		{101, 100, true},    // newer patch
		{200, 100, true},    // newer minor
		{100, 101, true},    // older patch: same ABI
		{100, 200, false},   // older minor
		{10100, 100, false}, // another major
		{100, 10100, false},
	} {
		err := checkVersion(c.loaded, c.built)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrLibraryVersion)) {
			t.Errorf("loaded %d built %d: %v", c.loaded, c.built, err)
		}
	}
}
