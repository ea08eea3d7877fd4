#!/usr/bin/env bash
# Scenario 5, positive half: forced switch WITH cross-signing; fails when the controller does
# not cross-sign. See force-switch.sh.
exec bash "$(dirname "$0")/force-switch.sh" --cross-signing
