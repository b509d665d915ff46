/// A first-in first-out queue over one array, taken from the front by an index: `removeFirst`
/// per element would move the rest each time. The taken part is cut off once the queue
/// empties, or once it is large and more than half of the array.
struct FIFOQueue<Element> {
    private var elements: [Element] = []
    private var head = 0

    var isEmpty: Bool { head == elements.count }

    var first: Element? { isEmpty ? nil : elements[head] }

    mutating func append(_ element: Element) { elements.append(element) }

    /// The first element, taken if it meets `condition` (checked in place, without a copy).
    mutating func popFirst(if condition: (borrowing Element) -> Bool) -> Element? {
        guard !isEmpty, condition(elements[head]) else { return nil }
        return popFirst()
    }

    mutating func popFirst() -> Element? {
        guard !isEmpty else { return nil }
        let element = elements[head]
        head += 1
        if head == elements.count {
            elements.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 1024 && head * 2 > elements.count {
            elements.removeFirst(head)
            head = 0
        }
        return element
    }

    mutating func removeAll() {
        elements.removeAll(keepingCapacity: true)
        head = 0
    }
}
