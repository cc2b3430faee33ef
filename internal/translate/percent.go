package translate

import (
	"math"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"istio.io/api/networking/v1alpha3"
)

// millionths converts Istio's percentage (a double, 0-100) into a fraction
// per million, as Istio does: 0.1% is 1000 per million. The value is
// rounded, so that 0.29% is 2900 rather than 2899.
func millionths(p *v1alpha3.Percent) *typev3.FractionalPercent {
	v := math.Round(p.GetValue() * 10000)
	return &typev3.FractionalPercent{
		Numerator:   uint32(min(max(v, 0), 1_000_000)),
		Denominator: typev3.FractionalPercent_MILLION,
	}
}

// hundredths converts a deprecated integer percentage (0-100) into a
// fraction per hundred, as Istio does.
func hundredths(n int64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{
		Numerator:   uint32(min(max(n, 0), 100)),
		Denominator: typev3.FractionalPercent_HUNDRED,
	}
}
