package concordpb

import "fmt"

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
