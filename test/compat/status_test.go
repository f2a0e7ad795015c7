package compat

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// What `etcdctl endpoint status` shows of a member that is not a number of
// its own (sizes, indexes and ids differ by nature): the server and
// storage versions, learner or not, errors.
func TestStatusMatchesEtcd(t *testing.T) {
	show := func(s *system) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ep := s.cli.Endpoints()[0]
		st, err := s.cli.Status(ctx, ep)
		if err != nil {
			t.Fatalf("%s: status: %v", s.name, err)
		}
		return fmt.Sprintf("version=%s storage=%s learner=%v errors=%v leader-known=%v", st.Version, st.StorageVersion, st.IsLearner, st.Errors, st.Leader != 0)
	}
	e, c := show(etcdSys), show(concordSys)
	if e != c {
		t.Errorf("status differs:\netcd:    %s\nconcord: %s", e, c)
	}
	t.Log(e)
}
