from bgmon.cli import main

raise SystemExit(main())
