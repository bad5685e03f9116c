//go:build !linux

package upstream

import "net"

// alive cannot peek without waiting on this platform: a connection the
// peer closed is found when the request on it fails, and the request is
// then sent again on a new connection.
func alive(net.Conn) bool { return true }
