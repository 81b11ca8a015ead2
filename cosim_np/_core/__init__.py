"""The core every backend shares: argument checks and the dtype policy
(``validate``), the plans of each public function (shapes, padding, unit
kernels), the scalar formulas both backends compile, and every tunable
(``config``).  It imports no backend and no public module."""
