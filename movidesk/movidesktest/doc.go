// Package movidesktest is a fake Movidesk telephony API for tests: an
// httptest server that records every request, checks it as strictly as the
// real API would (stricter where a lax check would hide a client bug), and
// can be made slow, down, failing or rate limited at any time.
package movidesktest
