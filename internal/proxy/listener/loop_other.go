//go:build !linux

package listener

import (
	"errors"
	"net"
)

// loops are event loops, which only Linux has.
type loops struct{}

// LoopsSupported says why this process cannot run event loops.
func LoopsSupported() error { return errors.New("event loops need Linux") }

func (m *Manager) startLoops(int) error { return LoopsSupported() }

func (m *Manager) stopLoops() {}

func (m *Manager) loopStats(*Stats) {}

func (s *socket) adopt(net.Conn, []byte, *connInfo) bool { return false }
