package h2

import (
	"encoding/binary"
	"fmt"
)

// Frame types (RFC 9113, section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Frame flags.
const (
	flagEndStream  = 0x1 // DATA, HEADERS
	flagAck        = 0x1 // SETTINGS, PING
	flagEndHeaders = 0x4 // HEADERS, CONTINUATION
	flagPadded     = 0x8 // DATA, HEADERS
	flagPriority   = 0x20
)

// Settings (section 6.5.2).
const (
	settingHeaderTableSize      = 0x1
	settingEnablePush           = 0x2
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6
)

// ErrCode is an HTTP/2 error code (section 7).
type ErrCode uint32

// Error codes.
const (
	ErrCodeNo              ErrCode = 0x0
	ErrCodeProtocol        ErrCode = 0x1
	ErrCodeInternal        ErrCode = 0x2
	ErrCodeFlowControl     ErrCode = 0x3
	ErrCodeStreamClosed    ErrCode = 0x5
	ErrCodeFrameSize       ErrCode = 0x6
	ErrCodeRefusedStream   ErrCode = 0x7
	ErrCodeCancel          ErrCode = 0x8
	ErrCodeCompression     ErrCode = 0x9
	ErrCodeEnhanceYourCalm ErrCode = 0xb
	ErrCodeHTTP11Required  ErrCode = 0xd
)

var errCodeNames = [...]string{"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
	"SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
	"COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"}

func (c ErrCode) String() string {
	if int(c) < len(errCodeNames) {
		return errCodeNames[c]
	}
	return fmt.Sprintf("error code 0x%x", uint32(c))
}

// Preface is what a client sends first on an HTTP/2 connection.
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

const (
	frameHeaderLen = 9
	// defaultMaxFrameSize is the largest frame payload either end may
	// send before the other's SETTINGS say otherwise, and what this
	// package accepts.
	defaultMaxFrameSize = 16384
	defaultWindow       = 65535
	maxWindow           = 1<<31 - 1
)

// frameHeader is a frame's first nine bytes.
type frameHeader struct {
	length   uint32
	typ      uint8
	flags    uint8
	streamID uint32
}

func parseFrameHeader(b []byte) frameHeader {
	return frameHeader{
		length:   uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		typ:      b[3],
		flags:    b[4],
		streamID: binary.BigEndian.Uint32(b[5:]) & (1<<31 - 1),
	}
}

// appendFrameHeader appends a frame header for a payload of length n.
func appendFrameHeader(b []byte, n int, typ, flags uint8, stream uint32) []byte {
	return append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags,
		byte(stream>>24), byte(stream>>16), byte(stream>>8), byte(stream))
}

func appendSettings(b []byte, kv ...uint32) []byte {
	b = appendFrameHeader(b, 6*len(kv)/2, frameSettings, 0, 0)
	for i := 0; i+1 < len(kv); i += 2 {
		b = append(b, byte(kv[i]>>8), byte(kv[i]))
		b = binary.BigEndian.AppendUint32(b, kv[i+1])
	}
	return b
}

func appendWindowUpdate(b []byte, stream, incr uint32) []byte {
	b = appendFrameHeader(b, 4, frameWindowUpdate, 0, stream)
	return binary.BigEndian.AppendUint32(b, incr)
}

func appendRSTStream(b []byte, stream uint32, code ErrCode) []byte {
	b = appendFrameHeader(b, 4, frameRSTStream, 0, stream)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

func appendGoAway(b []byte, lastStream uint32, code ErrCode, debug string) []byte {
	b = appendFrameHeader(b, 8+len(debug), frameGoAway, 0, 0)
	b = binary.BigEndian.AppendUint32(b, lastStream)
	b = binary.BigEndian.AppendUint32(b, uint32(code))
	return append(b, debug...)
}

// connError is a connection error: the connection ends with a GOAWAY
// carrying code.
type connError struct {
	code ErrCode
	msg  string
}

func (e connError) Error() string { return "http2: " + e.msg + " (" + e.code.String() + ")" }

func protocolError(format string, args ...any) error {
	return connError{code: ErrCodeProtocol, msg: fmt.Sprintf(format, args...)}
}

// StreamError is a stream's end by RST_STREAM, sent or received.
type StreamError struct {
	StreamID uint32
	Code     ErrCode
	// Remote is true when the peer reset the stream.
	Remote bool
}

func (e StreamError) Error() string {
	who := "reset"
	if e.Remote {
		who = "reset by the peer"
	}
	return fmt.Sprintf("http2: stream %d %s: %s", e.StreamID, who, e.Code)
}
