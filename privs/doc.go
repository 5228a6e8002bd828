// Package privs drops the process's privileges once what needs them (the
// TUN device and its routes) is set up: it picks the user to become
// (RunAs), becomes it with no capability left on any thread (Drop), and
// reads back what every thread holds (ReadCredentials), for the checks
// that the drop took.
package privs
