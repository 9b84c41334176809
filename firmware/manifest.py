# Frozen-image manifest for a custom OneTill ESP32 firmware (build notes: firmware/README.md).
# Everything frozen runs from flash and takes no heap. micropython-lib packages are required
# here, never copied into the repository.
include("$(PORT_DIR)/boards/manifest.py")

require("ssd1306")  # the OLED driver used by lib/board/displays.py

package("pos", base_path="$(MPY_DIR)/../onetill/lib")
package("board", base_path="$(MPY_DIR)/../onetill/lib")
