// Package doccheck holds the tests of the project's Markdown documentation
// (README.md, docs/ and the other pages of the tree): every relative link
// resolves to a file, and every #anchor to a heading of its page.
package doccheck
