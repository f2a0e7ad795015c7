package tlsutil_test

import (
	"fmt"

	"github.com/concorddb/concord/internal/tlsutil"
)

func ExampleParseCipherSuites() {
	ids, err := tlsutil.ParseCipherSuites("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
	fmt.Printf("%#04x %v\n", ids, err)
	_, err = tlsutil.ParseCipherSuites("TLS_RSA_WITH_RC4_128_SHA")
	fmt.Println(err != nil)
	// Output:
	// [0xc02b 0xc02f] <nil>
	// true
}
