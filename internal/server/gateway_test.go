package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestJSONGatewayAndHealth(t *testing.T) {
	c := startCluster(t, 3, nil)
	post := func(node int, path, body string) (int, map[string]any) {
		t.Helper()
		var resp *http.Response
		var err error
		for attempt := 0; attempt < 100; attempt++ {
			resp, err = http.Post(c.ClientURLs()[node]+path, "application/json", strings.NewReader(body))
			if err == nil && resp.StatusCode != http.StatusServiceUnavailable {
				break
			}
			if err == nil {
				resp.Body.Close()
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		out := map[string]any{}
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s: %s: %v", path, data, err)
		}
		return resp.StatusCode, out
	}
	// base64("foo") = "Zm9v", base64("bar") = "YmFy"
	if code, out := post(0, "/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`); code != 200 || out["header"] == nil {
		t.Fatalf("put: %d %v", code, out)
	}
	code, out := post(2, "/v3/kv/range", `{"key":"Zm9v"}`)
	kvs, _ := out["kvs"].([]any)
	if code != 200 || len(kvs) != 1 || kvs[0].(map[string]any)["value"] != "YmFy" || out["count"] != "1" {
		t.Fatalf("range: %d %v", code, out)
	}
	if code, out := post(1, "/v3/kv/put", `{"key":""}`); code != 400 || out["message"] != "etcdserver: key is not provided" {
		t.Fatalf("empty key: %d %v", code, out)
	}
	for _, path := range []string{"/livez", "/healthz", "/readyz"} {
		r, err := http.Get(c.ClientURLs()[2] + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Fatalf("%s: %d", path, r.StatusCode)
		}
	}
	resp, err := http.Get(c.ClientURLs()[1] + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 200 || h["health"] != "true" {
		t.Fatalf("health: %d %v %v", resp.StatusCode, h, err)
	}
}

func TestReadyzFailsWithoutQuorum(t *testing.T) {
	c := startCluster(t, 3, nil)
	putRetry(t, client(t, c, 2), "k", "v")
	c.StopNode(0)
	c.StopNode(1)
	// A leader's lease may still be valid for a moment (it is safe to read
	// under it); once it lapses the node must report not ready.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(c.ClientURLs()[2] + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && strings.HasPrefix(string(body), "not ready") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz without quorum: %d %s", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The process itself is alive.
	live, err := http.Get(c.ClientURLs()[2] + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	live.Body.Close()
	if live.StatusCode != 200 {
		t.Fatalf("livez: %d", live.StatusCode)
	}
}

// TestJSONGatewayWatch streams a watch over HTTP/1 as etcd's gateway does:
// one JSON object per response, the created one first.
func TestJSONGatewayWatch(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 1)
	putRetry(t, cli, "ready", "1")
	// base64("gw/") = "Z3cv", base64("gw0") = "Z3cw"
	req, err := http.NewRequest(http.MethodPost, c.ClientURLs()[0]+"/v3/watch", strings.NewReader(`{"create_request":{"key":"Z3cv","range_end":"Z3cw"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var created struct {
		Result struct {
			Created bool `json:"created"`
		} `json:"result"`
	}
	if err := dec.Decode(&created); err != nil || !created.Result.Created {
		t.Fatalf("created: %+v %v", created, err)
	}
	putRetry(t, cli, "gw/k", "v")
	var ev struct {
		Result struct {
			Events []struct {
				Kv struct {
					Key   string `json:"key"`
					Value string `json:"value"`
				} `json:"kv"`
			} `json:"events"`
		} `json:"result"`
	}
	if err := dec.Decode(&ev); err != nil || len(ev.Result.Events) != 1 || ev.Result.Events[0].Kv.Key != "Z3cvaw==" || ev.Result.Events[0].Kv.Value != "dg==" {
		t.Fatalf("event: %+v %v", ev, err)
	}
}

// TestJSONGatewayLockAndElection serves etcd's /v3/lock and /v3/election
// paths.
func TestJSONGatewayLockAndElection(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 1)
	putRetry(t, cli, "ready", "1")
	post := func(path, body string) map[string]any {
		t.Helper()
		resp, err := http.Post(c.ClientURLs()[0]+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := map[string]any{}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v %v", path, resp.StatusCode, out, err)
		}
		return out
	}
	grant := post("/v3/lease/grant", `{"TTL":30}`)
	id := grant["ID"].(string)
	// base64("jl") = "amw=", base64("je") = "amU=", base64("v1") = "djE="
	locked := post("/v3/lock/lock", `{"name":"amw=","lease":"`+id+`"}`)
	if locked["key"] == nil {
		t.Fatalf("lock: %v", locked)
	}
	post("/v3/lock/unlock", `{"key":"`+locked["key"].(string)+`"}`)
	camp := post("/v3/election/campaign", `{"name":"amU=","lease":"`+id+`","value":"djE="}`)
	leader := post("/v3/election/leader", `{"name":"amU="}`)
	if kv, _ := leader["kv"].(map[string]any); kv == nil || kv["value"] != "djE=" || camp["leader"] == nil {
		t.Fatalf("campaign %v, leader %v", camp, leader)
	}
}

// The JSON gateway serves etcd's /v3/auth/* and takes a token in the
// Authorization header, as etcd's does.
func TestJSONGatewayAuth(t *testing.T) {
	c := startCluster(t, 1, func(_ int, cfg *Config) { cfg.BcryptCost = 4 })
	call := func(path, token, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, c.ClientURLs()[0]+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out
	}
	for _, s := range []struct{ path, body string }{
		{"/v3/auth/user/add", `{"name":"root","password":"pw"}`},
		{"/v3/auth/user/grant", `{"user":"root","role":"root"}`},
		{"/v3/auth/enable", `{}`},
	} {
		if code, out := call(s.path, "", s.body); code != http.StatusOK {
			t.Fatalf("%s: %d %v", s.path, code, out)
		}
	}
	if code, out := call("/v3/kv/put", "", `{"key":"Zm9v","value":"YmFy"}`); code == http.StatusOK || !strings.Contains(fmt.Sprint(out["message"]), "user name is empty") {
		t.Fatalf("put without a token: %d %v", code, out)
	}
	code, out := call("/v3/auth/authenticate", "", `{"name":"root","password":"pw"}`)
	tok, _ := out["token"].(string)
	if code != http.StatusOK || tok == "" {
		t.Fatalf("authenticate: %d %v", code, out)
	}
	if code, out := call("/v3/kv/put", tok, `{"key":"Zm9v","value":"YmFy"}`); code != http.StatusOK {
		t.Fatalf("put with the token: %d %v", code, out)
	}
	if code, out := call("/v3/auth/user/list", tok, `{}`); code != http.StatusOK || fmt.Sprint(out["users"]) != "[root]" {
		t.Fatalf("user list: %d %v", code, out)
	}
	if code, out := call("/v3/auth/disable", tok, `{}`); code != http.StatusOK {
		t.Fatalf("disable: %d %v", code, out)
	}
}
