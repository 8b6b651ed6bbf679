#!/usr/bin/python3
"""A GTK drag source for the Studio's end-to-end test: a small undecorated window at X, Y
that offers one file (text/uri-list), so that xdotool can drag it onto the Studio and the
app gets a real OS drop (WebDriver cannot make one).

    /usr/bin/python3 tests/tools/drag_source.py PATH X Y

Prints "ready" once the window is shown; runs until killed.
"""
import sys

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, GLib, Gtk  # noqa: E402


def main():
    path, x, y = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    win = Gtk.Window(title="bluesphere-drag-source")
    win.set_decorated(False)
    win.set_keep_above(True)
    win.set_default_size(120, 60)
    win.move(x, y)
    box = Gtk.EventBox()
    box.add(Gtk.Label(label="drag me"))
    win.add(box)
    box.drag_source_set(Gdk.ModifierType.BUTTON1_MASK, [], Gdk.DragAction.COPY)
    box.drag_source_add_uri_targets()

    def give(_widget, _ctx, data, _info, _time):
        data.set_uris([GLib.filename_to_uri(path, None)])

    box.connect("drag-data-get", give)
    win.connect("destroy", Gtk.main_quit)
    win.show_all()
    GLib.idle_add(lambda: print("ready", flush=True) and False)
    Gtk.main()


if __name__ == "__main__":
    main()
