package kvpb

// IsReadOnly reports whether op only reads: a Range, or a Txn whose
// branches (recursively) hold only Ranges.
func IsReadOnly(op *RequestOp) bool {
	switch {
	case op.GetRange() != nil:
		return true
	case op.GetTxn() != nil:
		for _, o := range op.GetTxn().GetSuccess() {
			if !IsReadOnly(o) {
				return false
			}
		}
		for _, o := range op.GetTxn().GetFailure() {
			if !IsReadOnly(o) {
				return false
			}
		}
		return true
	}
	return false
}
