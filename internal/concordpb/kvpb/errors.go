package kvpb

import (
	"context"
	"errors"
	"fmt"
)

// Error makes *Error a Go error, so a structured error can travel from a
// replica through the router to the API edge, where its code is translated.
func (e *Error) Error() string {
	if e.GetMessage() == "" {
		return "concord: " + e.GetCode().String()
	}
	return e.GetMessage()
}

// Errorf builds an *Error with a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err if it is (or wraps) an *Error, and ErrorCode_OK
// otherwise.
func CodeOf(err error) ErrorCode {
	for err != nil {
		if e, ok := err.(*Error); ok {
			return e.GetCode()
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return ErrorCode_OK
		}
		err = u.Unwrap()
	}
	return ErrorCode_OK
}

// AsError turns any error into the wire's structured error: an *Error as it
// is, a wrapped one by its code, a context's end as UNAVAILABLE, anything
// else as INTERNAL.
func AsError(err error) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	if c := CodeOf(err); c != ErrorCode_OK {
		return &Error{Code: c, Message: err.Error()}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &Error{Code: ErrorCode_UNAVAILABLE, Message: err.Error()}
	}
	return &Error{Code: ErrorCode_INTERNAL, Message: err.Error()}
}
