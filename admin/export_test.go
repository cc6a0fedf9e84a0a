package admin

// MaxFailedListed is maxFailedListed, for the tests.
const MaxFailedListed = maxFailedListed
