from golive.bench.runner import main

raise SystemExit(main())
